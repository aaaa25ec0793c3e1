package wire

import "time"

// SessionMFAQuery asks whether sessions as Login to the nodes (ids) need a
// per-session MFA check.
type SessionMFAQuery struct {
	Nodes []string `json:"nodes"`
	Login string   `json:"login"`
}

// SessionMFAStatus answers a SessionMFAQuery: Required when one of the
// nodes needs a check; Window and MaxSessions when the caller's roles let
// one check cover a batch (zero: one session to one node).
type SessionMFAStatus struct {
	Required    bool          `json:"required"`
	Window      time.Duration `json:"window,omitempty"`
	MaxSessions int           `json:"max_sessions,omitempty"`
	// TOTP says the user has a TOTP device; WebAuthn a passkey.
	TOTP     bool `json:"totp"`
	WebAuthn bool `json:"webauthn"`
}

// SessionCertRequest asks for a per-session MFA certificate for
// PublicKey (authorized_keys format): for Login on the nodes (ids), for
// Sessions sessions (0: one per node), after the fresh MFA check MFA.
type SessionCertRequest struct {
	PublicKey string      `json:"public_key"`
	Nodes     []string    `json:"nodes"`
	Login     string      `json:"login"`
	Sessions  int         `json:"sessions,omitempty"`
	MFA       MFAResponse `json:"mfa"`
}

// SessionCert is a per-session MFA certificate.
type SessionCert struct {
	SSHCert     string    `json:"ssh_cert"`
	Expires     time.Time `json:"expires"`
	Device      string    `json:"mfa_device"`
	MaxSessions int       `json:"max_sessions"`
}
