package wire

import "time"

// Token is a join token (only its hash is stored).
type Token struct {
	Type      string    `json:"type"`
	Expires   time.Time `json:"expires"`
	Reusable  bool      `json:"reusable,omitempty"`
	CreatedBy string    `json:"created_by"`
	Hint      string    `json:"hint"` // first characters, to tell tokens apart in listings
	Hash      string    `json:"hash"`
	// Bot is the bot a bot or oidc token joins.
	Bot string `json:"bot,omitempty"`
	// OIDC are an oidc token's rules (it holds no secret: Hint is its name).
	OIDC *OIDCJoinRules `json:"oidc,omitempty"`
}

// CreateTokenRequest creates a join token.
type CreateTokenRequest struct {
	Type     string        `json:"type"`
	TTL      time.Duration `json:"ttl"`
	Reusable bool          `json:"reusable,omitempty"`
	// Bot is the bot a bot or oidc token joins.
	Bot string `json:"bot,omitempty"`
	// Name and OIDC: an oidc token's name and rules.
	Name string         `json:"name,omitempty"`
	OIDC *OIDCJoinRules `json:"oidc,omitempty"`
}

// TokenResult is the secret token, shown once.
type TokenResult struct {
	Token   string    `json:"token"`
	Type    string    `json:"type"`
	Expires time.Time `json:"expires"`
}

// JoinRequest is sent by a node with a join token.
type JoinRequest struct {
	Token string `json:"token"`
	// Kind is what joins: "node" (the default) or "kube" (a kube agent,
	// with a kube join token).
	Kind      string `json:"kind,omitempty"`
	Name      string `json:"name"`
	Hostname  string `json:"hostname"`
	PublicKey string `json:"public_key"`
	// Principals are, for a proxy, the names and addresses users and
	// nodes reach it by (its certificates are issued for them).
	Principals []string `json:"principals,omitempty"`
	RemoteAddr string   `json:"-"`
}

// JoinResponse carries the node's new identity.
type JoinResponse struct {
	Certs
	NodeID string `json:"node_id"`
}

// ProxyCerts are a proxy's certificates: those of Certs (its SSH host
// certificate and its API client certificate) and the TLS server
// certificate it presents to users and nodes.
type ProxyCerts struct {
	Certs
	TLSServerCert string `json:"tls_server_cert"`
}

// ProxyJoinResponse carries a proxy's new identity.
type ProxyJoinResponse struct {
	ProxyCerts
	ProxyID string `json:"proxy_id"`
}

// ProxyInventory is what a proxy running apart publishes: the nodes and
// Kubernetes clusters whose tunnels end at it.
type ProxyInventory struct {
	Nodes        []Node        `json:"nodes"`
	KubeClusters []KubeCluster `json:"kube_clusters,omitempty"`
}

// ProxyRenewRequest asks for a proxy's certificates for a new key.
type ProxyRenewRequest struct {
	PublicKey string `json:"public_key"`
}

// Node is a live node as seen through its tunnel.
type Node struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Hostname string            `json:"hostname"`
	Labels   map[string]string `json:"labels,omitempty"`
	Version  string            `json:"version,omitempty"`
	// Since is when the node's current tunnel connected.
	Since time.Time `json:"since"`
	// LastSeen is the last heartbeat over the tunnel.
	LastSeen time.Time `json:"last_seen"`
	// Agentless: the proxy reaches the server's own sshd at Addr (no
	// agent, no tunnel).
	Agentless bool   `json:"agentless,omitempty"`
	Addr      string `json:"addr,omitempty"`
}
