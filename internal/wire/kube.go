package wire

// KubeCluster is a Kubernetes cluster served by a kube agent, as the
// proxy's tunnel registry lists it.
type KubeCluster struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// AgentID is the registration id of the kube agent serving it.
	AgentID string `json:"agent_id,omitempty"`
}

// KubeClusterList is the body of GET /v1/kube/clusters.
type KubeClusterList struct {
	Clusters []KubeCluster `json:"clusters"`
}

// Join token types.
const (
	TokenTypeNode = "node"
	TokenTypeKube = "kube"
	// TokenTypeProxy joins a proxy that runs apart from auth
	// (docs/postgres.md, split deployments).
	TokenTypeProxy = "proxy"
)
