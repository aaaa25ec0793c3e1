package wire

import "time"

// KindAgentlessNode is the YAML kind of an agentless server (warden apply).
const KindAgentlessNode = "agentless_node"

// SignHostRequest asks for a host certificate for a server's own sshd host
// key (warden sign --host).
type SignHostRequest struct {
	// Name is the server's name in Warden; it is always a principal.
	Name string `json:"name"`
	// Principals are more names clients reach the server by.
	Principals []string `json:"principals,omitempty"`
	// PublicKey is the sshd host public key (authorized_keys format).
	PublicKey string        `json:"public_key"`
	TTL       time.Duration `json:"ttl,omitempty"`
}

// SignHostResponse is the host certificate.
type SignHostResponse struct {
	// Cert is the OpenSSH certificate (authorized_keys format), for
	// sshd's HostCertificate.
	Cert       string    `json:"cert"`
	Principals []string  `json:"principals"`
	Expires    time.Time `json:"expires"`
	// TLSCert (PEM) is the server's API identity for the same key, for
	// warden krl sync; set when the server is registered as agentless.
	// TLSCA is the cluster's TLS CA (PEM), which it trusts.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSCA   string `json:"tls_ca,omitempty"`
}

// AgentlessNode is a server Warden reaches through its own OpenSSH sshd,
// with no agent installed: the proxy connects to Addr on the user's behalf.
type AgentlessNode struct {
	Kind     string `json:"kind,omitempty"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec AgentlessSpec `json:"spec"`
	// Status is what Warden observed (ignored on apply).
	Status *AgentlessStatus `json:"status,omitempty"`
}

// AgentlessSpec is an agentless server's configuration.
type AgentlessSpec struct {
	// Addr is sshd's host:port as the proxy reaches it.
	Addr   string            `json:"addr"`
	Labels map[string]string `json:"labels,omitempty"`
}

// AgentlessStatus is what Warden observed of an agentless server.
type AgentlessStatus struct {
	// ID is its node id (recordings and audit events name it).
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	// Reachable: sshd answered the proxy with an SSH version just now.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// KRLFetched is when the server's KRL sync last fetched the KRL (zero:
	// never).
	KRLFetched time.Time `json:"krl_fetched,omitzero"`
}
