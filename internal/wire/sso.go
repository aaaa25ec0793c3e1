package wire

import "time"

// KindOIDC is the kind of an OIDC connector resource.
const KindOIDC = "oidc"

// OIDCConnector is an OpenID Connect single sign-on connector, applied
// with `warden apply -f`. The client secret is never part of it: the spec
// names a file or an environment variable of the auth service that holds
// it, so exports, `warden get` and the audit log never contain it.
type OIDCConnector struct {
	Kind     string            `json:"kind"`
	Version  string            `json:"version,omitempty"`
	Metadata ConnectorMetadata `json:"metadata"`
	Spec     OIDCConnectorSpec `json:"spec"`
}

// ConnectorMetadata names a connector.
type ConnectorMetadata struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// OIDCConnectorSpec is what an OIDC connector says.
type OIDCConnectorSpec struct {
	// IssuerURL is the IdP's issuer (discovery at
	// ISSUER/.well-known/openid-configuration). https, or http on a
	// loopback address only.
	IssuerURL string `json:"issuer_url"`
	ClientID  string `json:"client_id"`
	// ClientSecretFile or ClientSecretEnv: where the auth service reads the
	// client secret (exactly one).
	ClientSecretFile string `json:"client_secret_file,omitempty"`
	ClientSecretEnv  string `json:"client_secret_env,omitempty"`
	// RedirectURL is the proxy's callback as registered with the IdP:
	// https://PROXY/v1/sso/oidc/callback.
	RedirectURL string `json:"redirect_url"`
	// Scopes besides openid (default: email, profile).
	Scopes []string `json:"scopes,omitempty"`
	// UsernameClaim names the claim that becomes the Warden user name
	// (default preferred_username); its value must be a valid user name
	// (a-z, 0-9, '.', '_', '-'), else the login is refused.
	UsernameClaim string `json:"username_claim,omitempty"`
	// ClaimsToRoles maps claims to roles; a login whose claims match none
	// is refused.
	ClaimsToRoles []ClaimMapping `json:"claims_to_roles"`
	// Traits maps a trait name to the claim it is taken from; role
	// templates use it as {{external.NAME}}.
	Traits map[string]string `json:"traits,omitempty"`
}

// ClaimMapping grants Roles when the claim Claim (a string or a list of
// strings) has a value matching Value, a glob (* and ?).
type ClaimMapping struct {
	Claim string   `json:"claim"`
	Value string   `json:"value"`
	Roles []string `json:"roles"`
}

// SSOBeginRequest starts an SSO login from the CLI: the client's own
// public key, and its loopback callback where the browser is sent at the
// end.
type SSOBeginRequest struct {
	Connector      string        `json:"connector"`
	PublicKey      string        `json:"public_key"`
	ClientRedirect string        `json:"client_redirect"`
	TTL            time.Duration `json:"ttl,omitempty"`
	RemoteAddr     string        `json:"-"`
	// Web marks a sign-in from the web UI: ClientRedirect is then a path
	// under /web/ on the proxy itself. Never set from the API.
	Web bool `json:"-"`
}

// SSOBeginResponse is where to send the browser, and how to fetch the
// outcome: the login id the callback passes on, and a secret only this
// client knows.
type SSOBeginResponse struct {
	AuthURL     string `json:"auth_url"`
	ID          string `json:"id"`
	ResultToken string `json:"result_token"`
}

// SSOResultRequest fetches the outcome of an SSO login (once).
type SSOResultRequest struct {
	ID          string `json:"id"`
	ResultToken string `json:"result_token"`
}
