package wire

import "time"

// LoginRequest authenticates a person with password and TOTP. PublicKey is
// the client's own public key (authorized_keys format): the private key
// never leaves the client.
type LoginRequest struct {
	User       string        `json:"user"`
	Password   string        `json:"password"`
	OTP        string        `json:"otp"`
	PublicKey  string        `json:"public_key"`
	TTL        time.Duration `json:"ttl,omitempty"`
	RemoteAddr string        `json:"-"`
	// Via names the front end for the audit log ("web" for a browser
	// sign-in; empty for the API).
	Via string `json:"-"`
}

// LoginResponse is returned by Login.
type LoginResponse struct {
	Certs
	User   string   `json:"user"`
	Roles  []string `json:"roles"`
	Logins []string `json:"logins"`
}

// Certs are the certificates and trust anchors a client or node receives.
type Certs struct {
	Cluster string `json:"cluster"`
	// SSHCert is an OpenSSH certificate in authorized_keys format.
	SSHCert string `json:"ssh_cert"`
	// TLSCert is a PEM X.509 client certificate for the API.
	TLSCert string `json:"tls_cert"`
	// TLSCA is the PEM TLS CA certificate of the API.
	TLSCA string `json:"tls_ca"`
	// HostCAs and UserCAs are authorized_keys lines.
	HostCAs []string  `json:"host_cas"`
	UserCAs []string  `json:"user_cas"`
	Expires time.Time `json:"expires"`
}
