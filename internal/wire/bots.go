package wire

import "time"

// CreateBotRequest adds a bot: a machine user with roles, no password and
// no MFA, which joins with a single-use token and renews its own
// certificates.
type CreateBotRequest struct {
	Name   string   `json:"name"`
	Roles  []string `json:"roles"`
	Logins []string `json:"logins,omitempty"`
	// TTL is the lifetime of the bot's certificates (default 1h).
	TTL time.Duration `json:"ttl,omitempty"`
	// TokenTTL is how long the join token is valid (default 30m).
	TokenTTL time.Duration `json:"token_ttl,omitempty"`
}

// CreateBotResult is the new bot and its first join token (shown once).
type CreateBotResult struct {
	Bot   BotInfo     `json:"bot"`
	Token TokenResult `json:"token"`
}

// BotInfo describes a bot (no secrets).
type BotInfo struct {
	Name string `json:"name"`
	// User is the bot's user name (bot-NAME): its certificates, sessions,
	// audit events and locks (warden lock --user bot-NAME) use it.
	User      string        `json:"user"`
	Roles     []string      `json:"roles"`
	Logins    []string      `json:"logins,omitempty"`
	TTL       time.Duration `json:"ttl"`
	CreatedAt time.Time     `json:"created_at"`
	CreatedBy string        `json:"created_by,omitempty"`
	// Instances are the bot's live joins.
	Instances []BotInstance `json:"instances,omitempty"`
}

// BotInstance is one join of a bot and how far its identity has renewed.
type BotInstance struct {
	ID         string    `json:"id"`
	Method     string    `json:"method"`
	JoinToken  string    `json:"join_token,omitempty"`
	Generation uint64    `json:"generation"`
	JoinedAt   time.Time `json:"joined_at"`
	RenewedAt  time.Time `json:"renewed_at"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Expires    time.Time `json:"expires"`
}

// BotJoinRequest is sent by `warden bot start` to join: either a secret
// join token (Token), or the name of an OIDC join token (JoinToken) with
// the CI job's ID token (IDToken).
type BotJoinRequest struct {
	Token      string `json:"token,omitempty"`
	JoinToken  string `json:"join_token,omitempty"`
	IDToken    string `json:"id_token,omitempty"`
	PublicKey  string `json:"public_key"`
	RemoteAddr string `json:"-"`
}

// BotCertsRequest asks for a bot's certificates: a renewal of its own
// identity (Roles empty), or an output's certificates for some of its
// roles.
type BotCertsRequest struct {
	PublicKey  string   `json:"public_key"`
	Roles      []string `json:"roles,omitempty"`
	RemoteAddr string   `json:"-"`
}

// BotCerts are a bot's certificates, with the generation they carry (0 for
// an output's).
type BotCerts struct {
	LoginResponse
	Bot        string `json:"bot"`
	Instance   string `json:"instance,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
}

// OIDCJoinRules are the claims an ID token must carry to join with an OIDC
// join token. Allow rules are alternatives: a token matches when every
// claim of one rule matches (values are globs: * and ?).
type OIDCJoinRules struct {
	Issuer   string              `json:"issuer"`
	Audience string              `json:"audience"`
	Allow    []map[string]string `json:"allow"`
	// CAPEM, if set, is the CA the issuer's HTTPS certificate chains to
	// (a self-hosted CI with a private CA); the system's otherwise.
	CAPEM string `json:"ca_pem,omitempty"`
}
