package wire

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"
)

var connectorName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

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
	// UsernameDomain, when set, is the e-mail domain the user name claim's
	// value must end with (@DOMAIN), taken off to make the Warden user
	// name: ann@example.com becomes ann; another domain is refused.
	UsernameDomain string `json:"username_domain,omitempty"`
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

// SSOResultRequest fetches the outcome of an SSO login, once: the login
// id and result token the client got when it began, and the code the
// browser brought back to its callback. Both halves are needed: whoever
// began a login and sent the IdP's link to someone else lacks the code.
type SSOResultRequest struct {
	ID          string `json:"id"`
	ResultToken string `json:"result_token"`
	Code        string `json:"code"`
	RemoteAddr  string `json:"-"`
}

// Validate checks a connector: auth before it stores it, the CLI before
// it applies anything.
func (c *OIDCConnector) Validate() error {
	if c.Kind != KindOIDC {
		return fmt.Errorf("kind must be %q", KindOIDC)
	}
	if !connectorName.MatchString(c.Metadata.Name) {
		return fmt.Errorf("metadata.name %q: want letters, digits, '.', '_' or '-'", c.Metadata.Name)
	}
	sp := c.Spec
	if err := checkIDPURL("issuer_url", sp.IssuerURL); err != nil {
		return err
	}
	if sp.ClientID == "" {
		return errors.New("client_id is required")
	}
	if (sp.ClientSecretFile == "") == (sp.ClientSecretEnv == "") {
		return errors.New("exactly one of client_secret_file and client_secret_env is required (the secret itself is never part of the connector)")
	}
	if err := checkIDPURL("redirect_url", sp.RedirectURL); err != nil {
		return err
	}
	if err := checkUsernameDomain(sp.UsernameDomain); err != nil {
		return err
	}
	if len(sp.ClaimsToRoles) == 0 {
		return errors.New("claims_to_roles: at least one mapping is required")
	}
	for i, m := range sp.ClaimsToRoles {
		if m.Claim == "" || m.Value == "" || len(m.Roles) == 0 {
			return fmt.Errorf("claims_to_roles[%d]: claim, value and roles are required", i)
		}
		if _, err := ClaimMatcher(m.Value); err != nil {
			return fmt.Errorf("claims_to_roles[%d]: value %q: %v", i, m.Value, err)
		}
	}
	for name, claim := range sp.Traits {
		if name == "" || claim == "" {
			return errors.New("traits: names and claims must not be empty")
		}
	}
	return nil
}

// checkIDPURL allows https, and http only to a loopback address (a local
// IdP, or tests).
func checkIDPURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s %q: not an absolute URL", field, s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(u.Hostname()) {
			return nil
		}
	}
	return fmt.Errorf("%s %q: must be https (http only on a loopback address)", field, s)
}

// IsLoopbackHost reports whether h names this machine's loopback.
func IsLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// ClaimMatcher compiles a claims_to_roles value: a regular expression
// when it starts with ^ (matched whole: it must end with $), else a glob
// (* and ?, the whole value).
func ClaimMatcher(value string) (func(string) bool, error) {
	if strings.HasPrefix(value, "^") {
		if !strings.HasSuffix(value, "$") {
			return nil, errors.New("a regular expression must be anchored: ^...$")
		}
		re, err := regexp.Compile(value)
		if err != nil {
			return nil, err
		}
		return re.MatchString, nil
	}
	if _, err := path.Match(value, ""); err != nil {
		return nil, err
	}
	return func(v string) bool { ok, _ := path.Match(value, v); return ok }, nil
}

// UsernameFrom makes a Warden user name of an IdP's value: as is, or with
// domain set, the part before "@DOMAIN" (case-insensitive, as IdPs treat
// addresses), in lower case; any other value is refused.
func UsernameFrom(value, domain string) (string, error) {
	if domain == "" {
		return value, nil
	}
	local, dom, ok := strings.Cut(value, "@")
	if !ok || !strings.EqualFold(dom, domain) {
		return "", fmt.Errorf("%q is not an address @%s (username_domain)", value, domain)
	}
	return strings.ToLower(local), nil
}

func checkUsernameDomain(d string) error {
	if d != "" && (strings.ContainsAny(d, "@ /") || !strings.Contains(d, ".")) {
		return fmt.Errorf("username_domain %q: want a domain such as example.com", d)
	}
	return nil
}
