// Package tunnel is the wire protocol between the proxy and what dials out
// to it: a node's reverse tunnel (an SSH connection on which the proxy opens
// a channel per user connection, with heartbeats carrying labels), the data
// connections that carry a session's bytes without a second encryption, and
// the user side of those (DialData). Both ends import it: the proxy serves
// it, and an agent (the node agent today; any agent that dials out) runs
// DialAndServe. It knows nothing of nodes' SSH servers or of auth.
package tunnel

// Protocol names shared by the proxy and the agents that dial it.
const (
	// ChannelNodeConn is opened by the proxy on a node's tunnel for each
	// user connection; its payload is a NodeConnPayload.
	ChannelNodeConn = "node-conn@warden.dev"
	// ChannelKubeConn is opened by the proxy on a kube agent's tunnel for
	// each HTTP/1.1 connection carrying Kubernetes API requests; no payload.
	ChannelKubeConn = "kube-conn@warden.dev"
	// RequestHeartbeat is a global request from the node carrying a
	// Heartbeat as JSON.
	RequestHeartbeat = "heartbeat@warden.dev"
	// User is the SSH user name a node uses on its tunnel.
	User = "-warden-node"
)

// NodeConnPayload describes the user connection inside a node-conn channel.
type NodeConnPayload struct {
	ClientAddr string
	User       string
}

// Heartbeat is what a node reports over its tunnel.
type Heartbeat struct {
	Labels  map[string]string `json:"labels,omitempty"`
	Version string            `json:"version,omitempty"`
	// Kube lists the Kubernetes clusters a kube agent serves.
	Kube []KubeCluster `json:"kube,omitempty"`
}

// KubeCluster is one cluster a kube agent serves.
type KubeCluster struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}
