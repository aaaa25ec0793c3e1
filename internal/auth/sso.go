package auth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// OIDCConnector is wire.OIDCConnector.
type OIDCConnector = wire.OIDCConnector

// SSOBeginRequest, SSOBeginResponse and SSOResultRequest are the wire's.
type (
	SSOBeginRequest  = wire.SSOBeginRequest
	SSOBeginResponse = wire.SSOBeginResponse
	SSOResultRequest = wire.SSOResultRequest
)

const (
	prefixOIDC       = "/connectors/oidc/"
	prefixSSOPending = "/sso/pending/" // by the hash of the state; TTL ssoPendingTTL
	prefixSSOResult  = "/sso/results/" // by the login id; TTL resultTTL
	ssoPendingTTL    = 10 * time.Minute
	// oidcSkew is the clock skew allowed between auth and the IdP.
	oidcSkew = time.Minute
)

// UpsertConnector creates or replaces an OIDC connector.
func (s *Server) UpsertConnector(ctx context.Context, c Caller, conn *OIDCConnector) error {
	if err := s.authorize(c, "UpsertConnector"); err != nil {
		return err
	}
	if err := conn.Validate(); err != nil {
		return badRequest("connector %q: %v", conn.Metadata.Name, err)
	}
	for _, m := range conn.Spec.ClaimsToRoles {
		if err := s.checkUserRoles(ctx, m.Roles); err != nil {
			return err
		}
	}
	if _, err := s.b.Get(ctx, prefixSAML+conn.Metadata.Name); err == nil {
		return badRequest("connector %q: a saml connector has this name", conn.Metadata.Name)
	}
	key := prefixOIDC + conn.Metadata.Name
	_, getErr := s.b.Get(ctx, key)
	if err := s.putJSON(ctx, key, conn, time.Time{}); err != nil {
		return fmt.Errorf("store connector: %w", err)
	}
	s.oidc.forget(conn.Metadata.Name)
	op := "updated"
	if errors.Is(getErr, storage.ErrNotFound) {
		op = "created"
	}
	s.emit(ctx, audit.Event{Event: audit.ConnectorApply, User: c.Name(), Success: true,
		Fields: map[string]any{"connector": conn.Metadata.Name, "kind": wire.KindOIDC, "operation": op}})
	return nil
}

// GetConnector returns one OIDC connector (it holds no secret).
func (s *Server) GetConnector(ctx context.Context, c Caller, name string) (*OIDCConnector, error) {
	if err := s.authorize(c, "GetConnector"); err != nil {
		return nil, err
	}
	var conn OIDCConnector
	if err := s.getJSON(ctx, prefixOIDC+name, &conn); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("connector %q: %w", name, storage.ErrNotFound)
		}
		return nil, err
	}
	return &conn, nil
}

// ListConnectors lists the OIDC connectors.
func (s *Server) ListConnectors(ctx context.Context, c Caller) ([]*OIDCConnector, error) {
	if err := s.authorize(c, "ListConnectors"); err != nil {
		return nil, err
	}
	return s.listConnectors(ctx)
}

func (s *Server) listConnectors(ctx context.Context) ([]*OIDCConnector, error) {
	items, err := s.b.List(ctx, prefixOIDC, 0)
	if err != nil {
		return nil, err
	}
	out := make([]*OIDCConnector, 0, len(items))
	for _, it := range items {
		var conn OIDCConnector
		if err := json.Unmarshal(it.Value, &conn); err != nil {
			return nil, err
		}
		out = append(out, &conn)
	}
	return out, nil
}

// ConnectorNames lists the connectors' names, for the web UI's sign-in
// page (no caller: the page is public, and names are no secret).
func (s *Server) ConnectorNames(ctx context.Context) ([]string, error) {
	conns, err := s.listConnectors(ctx)
	names := make([]string, 0, len(conns))
	for _, c := range conns {
		names = append(names, c.Metadata.Name)
	}
	if err != nil {
		return names, err
	}
	sconns, err := s.listSAMLConnectors(ctx)
	for _, c := range sconns {
		names = append(names, c.Metadata.Name)
	}
	sort.Strings(names)
	return names, err
}

// DeleteConnector removes an OIDC connector. Users it made stay, with
// the roles of their last login, until their certificates expire.
func (s *Server) DeleteConnector(ctx context.Context, c Caller, name string) error {
	if err := s.authorize(c, "DeleteConnector"); err != nil {
		return err
	}
	if err := s.b.Delete(ctx, prefixOIDC+name); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("connector %q: %w", name, storage.ErrNotFound)
		}
		return err
	}
	s.oidc.forget(name)
	s.emit(ctx, audit.Event{Event: audit.ConnectorDelete, User: c.Name(), Success: true,
		Fields: map[string]any{"connector": name, "kind": wire.KindOIDC}})
	return nil
}

// oidcProviders caches each connector's discovered provider: go-oidc's
// key set fetches the JWKS once and again only for an unknown key id.
type oidcProviders struct {
	mu sync.Mutex
	m  map[string]*oidcProvider
}

type oidcProvider struct {
	issuer, clientID string
	p                *oidc.Provider
}

func (o *oidcProviders) forget(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, name)
}

// idpClient is the HTTP client auth talks to identity providers with.
var idpClient = &http.Client{Timeout: 10 * time.Second}

func (o *oidcProviders) get(ctx context.Context, conn *OIDCConnector) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p, ok := o.m[conn.Metadata.Name]; ok && p.issuer == conn.Spec.IssuerURL && p.clientID == conn.Spec.ClientID {
		return p.p, nil
	}
	// The provider's key set keeps this context for its later fetches:
	// one that outlives the request.
	pctx := oidc.ClientContext(context.WithoutCancel(ctx), idpClient)
	dctx, cancel := context.WithTimeout(pctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, conn.Spec.IssuerURL)
	if err != nil {
		return nil, err
	}
	// NewProvider kept dctx for the key set; make a provider whose key set
	// uses the long-lived context.
	var meta struct {
		AuthURL  string   `json:"authorization_endpoint"`
		TokenURL string   `json:"token_endpoint"`
		JWKSURL  string   `json:"jwks_uri"`
		UserInfo string   `json:"userinfo_endpoint"`
		Algs     []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, err
	}
	p = (&oidc.ProviderConfig{IssuerURL: conn.Spec.IssuerURL, AuthURL: meta.AuthURL, TokenURL: meta.TokenURL,
		JWKSURL: meta.JWKSURL, UserInfoURL: meta.UserInfo, Algorithms: meta.Algs}).NewProvider(pctx)
	if o.m == nil {
		o.m = map[string]*oidcProvider{}
	}
	o.m[conn.Metadata.Name] = &oidcProvider{issuer: conn.Spec.IssuerURL, clientID: conn.Spec.ClientID, p: p}
	return p, nil
}

func clientSecret(conn *OIDCConnector) (string, error) {
	if f := conn.Spec.ClientSecretFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("read the client secret of connector %q: %v", conn.Metadata.Name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	v := os.Getenv(conn.Spec.ClientSecretEnv)
	if v == "" {
		return "", fmt.Errorf("connector %q: environment variable %s is not set", conn.Metadata.Name, conn.Spec.ClientSecretEnv)
	}
	return v, nil
}

func (s *Server) oauthConfig(ctx context.Context, conn *OIDCConnector) (*oauth2.Config, *oidc.Provider, error) {
	p, err := s.oidc.get(ctx, conn)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: the identity provider of connector %q is unreachable: %v", wire.ErrUpstream, conn.Metadata.Name, err)
	}
	secret, err := clientSecret(conn)
	if err != nil {
		return nil, nil, err
	}
	scopes := conn.Spec.Scopes
	if len(scopes) == 0 {
		scopes = []string{"email", "profile"}
	}
	return &oauth2.Config{ClientID: conn.Spec.ClientID, ClientSecret: secret, Endpoint: p.Endpoint(),
		RedirectURL: conn.Spec.RedirectURL, Scopes: append([]string{oidc.ScopeOpenID}, scopes...)}, p, nil
}

// ssoPending is an SSO login between its start and the IdP's callback.
type ssoPending struct {
	ID             string        `json:"id"`
	Connector      string        `json:"connector"`
	Verifier       string        `json:"verifier"`
	Nonce          string        `json:"nonce"`
	PublicKey      string        `json:"public_key"`
	ClientRedirect string        `json:"client_redirect"`
	TTL            time.Duration `json:"ttl,omitempty"`
	ResultHash     string        `json:"result_hash"`
	RemoteAddr     string        `json:"remote_addr"`
	// RequestID is a SAML login's AuthnRequest ID (the InResponseTo the
	// assertion must carry).
	RequestID string `json:"request_id,omitempty"`
}

// BeginOIDC starts an SSO login: authorization code flow with PKCE
// (S256), a state and a nonce, each single-use. The browser comes back to
// the proxy (OIDCCallback), which sends it on to the client's loopback
// ClientRedirect.
func (s *Server) BeginOIDC(ctx context.Context, req wire.SSOBeginRequest) (*wire.SSOBeginResponse, error) {
	if err := checkSSOBegin(req); err != nil {
		return nil, err
	}
	var conn OIDCConnector
	if err := s.getJSON(ctx, prefixOIDC+req.Connector, &conn); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("no SSO connector %q: %w", req.Connector, storage.ErrNotFound)
		}
		return nil, err
	}
	cfg, _, err := s.oauthConfig(ctx, &conn)
	if err != nil {
		return nil, err
	}
	var toks [4]string
	for i := range toks {
		if toks[i], err = identity.NewToken(); err != nil {
			return nil, err
		}
	}
	state, nonce, id, result := toks[0], toks[1], toks[2], toks[3]
	verifier := oauth2.GenerateVerifier()
	p := ssoPending{ID: id, Connector: conn.Metadata.Name, Verifier: verifier, Nonce: nonce, PublicKey: req.PublicKey,
		ClientRedirect: req.ClientRedirect, TTL: req.TTL, ResultHash: identity.HashToken(result), RemoteAddr: req.RemoteAddr}
	if err := s.createJSON(ctx, prefixSSOPending+identity.HashToken(state), p, s.now().Add(ssoPendingTTL)); err != nil {
		return nil, err
	}
	authURL := cfg.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	return &wire.SSOBeginResponse{AuthURL: authURL, ID: id, ResultToken: result}, nil
}

// checkSSOBegin checks the client's key and where the browser returns:
// the CLI's loopback listener, or for the web UI a path on the proxy.
func checkSSOBegin(req wire.SSOBeginRequest) error {
	if _, err := parsePublicKey(req.PublicKey); err != nil {
		return badRequest("%v", err)
	}
	if req.Web {
		u, err := url.Parse(req.ClientRedirect)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/web/") || strings.HasPrefix(u.Path, "//") ||
			u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || len(req.ClientRedirect) > maxClientRedirect {
			return badRequest("a web sign-in returns to a path under /web/")
		}
		return nil
	}
	return checkLoopbackRedirect(req.ClientRedirect)
}

// OIDCCallback is the IdP's redirect back (through the proxy): it spends
// the state, exchanges the code with the PKCE verifier, verifies the ID
// token (signature, issuer, audience, expiry, nonce), maps the claims to
// roles and issues the certificates. It returns where to send the browser
// next: the client's loopback callback, with the login id and a fresh
// one-time code the result must carry. Failures
// before the state is known return an error; later ones are kept for the
// client to fetch (ResultOIDC).
func (s *Server) OIDCCallback(ctx context.Context, state, code, idpError, remote string) (string, error) {
	if state == "" || len(state) > 128 {
		return "", badRequest("missing state")
	}
	key := prefixSSOPending + identity.HashToken(state)
	var p ssoPending
	if err := s.getJSON(ctx, key, &p); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", fmt.Errorf("%w: unknown or already used SSO state; start the login again", ErrUnauthenticated)
		}
		return "", err
	}
	// Single use: whoever deletes it goes on.
	if err := s.b.Delete(ctx, key); err != nil {
		return "", fmt.Errorf("%w: unknown or already used SSO state; start the login again", ErrUnauthenticated)
	}
	resp, reason, err := s.finishOIDC(ctx, &p, code, idpError)
	res := handoffResult{ResultHash: p.ResultHash, Login: resp, Method: "oidc", Connector: p.Connector}
	if err != nil {
		res.Error = err.Error()
		s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginFailure, RemoteAddr: p.RemoteAddr, Success: false,
			Error: reason, Fields: map[string]any{"method": "oidc", "connector": p.Connector}})
	}
	// The login id and a one-time code go to the browser that came back
	// from the IdP: the result needs both the begin's token and this code.
	return s.putHandoffResult(ctx, prefixSSOResult, p.ID, p.ClientRedirect, res)
}

// finishOIDC returns the certificates, or the error for the client and
// the reason for the audit log.
func (s *Server) finishOIDC(ctx context.Context, p *ssoPending, code, idpError string) (*wire.LoginResponse, string, error) {
	if idpError != "" {
		return nil, "IdP error: " + idpError, fmt.Errorf("%w: the identity provider refused the login: %s", ErrUnauthenticated, idpError)
	}
	var conn OIDCConnector
	if err := s.getJSON(ctx, prefixOIDC+p.Connector, &conn); err != nil {
		return nil, "connector not found", fmt.Errorf("%w: SSO connector %q no longer exists", ErrUnauthenticated, p.Connector)
	}
	cfg, prov, err := s.oauthConfig(ctx, &conn)
	if err != nil {
		return nil, "IdP unreachable", err
	}
	cctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, idpClient), 15*time.Second)
	defer cancel()
	tok, err := cfg.Exchange(cctx, code, oauth2.VerifierOption(p.Verifier))
	if err != nil {
		return nil, "code exchange failed", fmt.Errorf("%w: the identity provider did not accept the code: %v", ErrUnauthenticated, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, "no ID token", fmt.Errorf("%w: the identity provider returned no ID token", ErrUnauthenticated)
	}
	// Signature (JWKS, refreshed on an unknown key id), issuer, audience,
	// expiry; go-oidc allows a small clock skew.
	idt, err := prov.VerifierContext(cctx, &oidc.Config{ClientID: conn.Spec.ClientID, Now: s.now}).Verify(cctx, raw)
	if err != nil {
		return nil, "invalid ID token", fmt.Errorf("%w: invalid ID token: %v", ErrUnauthenticated, err)
	}
	// go-oidc does not look at iat: a token issued in the future (beyond
	// a small skew) or long ago is refused.
	if now := s.now(); idt.IssuedAt.After(now.Add(oidcSkew)) || idt.IssuedAt.Before(now.Add(-ssoPendingTTL-oidcSkew)) {
		return nil, "invalid ID token", fmt.Errorf("%w: invalid ID token: issued at %s, not now", ErrUnauthenticated, idt.IssuedAt.UTC().Format(time.RFC3339))
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.Nonce)) != 1 {
		return nil, "nonce mismatch", fmt.Errorf("%w: the ID token's nonce does not match this login", ErrUnauthenticated)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, "invalid ID token", fmt.Errorf("%w: ID token claims: %v", ErrUnauthenticated, err)
	}
	return s.ssoLogin(ctx, &conn, claims, idt.Subject, p)
}

// claimValues reads a claim as strings (a string, a list, or a scalar).
func claimValues(claims map[string]any, name string) []string {
	switch v := claims[name].(type) {
	case nil:
		return nil
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	default:
		return []string{fmt.Sprint(v)}
	}
}

// MapClaims returns the roles and traits a connector gives these claims.
func MapClaims(spec wire.OIDCConnectorSpec, claims map[string]any) (roles []string, traits map[string][]string) {
	for _, m := range spec.ClaimsToRoles {
		match, err := wire.ClaimMatcher(m.Value)
		if err != nil {
			continue // refused when the connector was applied
		}
		for _, v := range claimValues(claims, m.Claim) {
			if match(v) {
				roles = append(roles, m.Roles...)
				break
			}
		}
	}
	for name, claim := range spec.Traits {
		if vs := claimValues(claims, claim); len(vs) > 0 {
			if traits == nil {
				traits = map[string][]string{}
			}
			traits[name] = vs
		}
	}
	roles = uniq(roles)
	sort.Strings(roles)
	return roles, traits
}

// ssoLogin turns verified claims into a user record of type sso (upserted,
// roles recomputed at each login) and certificates, under the same caps,
// locks and current-state checks as a local user's.
func (s *Server) ssoLogin(ctx context.Context, conn *OIDCConnector, claims map[string]any, sub string, p *ssoPending) (*wire.LoginResponse, string, error) {
	claimName := conn.Spec.UsernameClaim
	if claimName == "" {
		claimName = "preferred_username"
	}
	names := claimValues(claims, claimName)
	if len(names) != 1 {
		return nil, "no user name claim", denied("the ID token has no %q claim for the user name (connector %q: username_claim)", claimName, conn.Metadata.Name)
	}
	name, err := wire.UsernameFrom(names[0], conn.Spec.UsernameDomain)
	if err != nil {
		return nil, "user name claim not valid", denied("the %q claim: %v", claimName, err)
	}
	if err := identity.ValidateUsername(name); err != nil {
		return nil, "user name claim not valid", denied("the %q claim is not a valid Warden user name: %v", claimName, err)
	}
	roles, traits := MapClaims(conn.Spec, claims)
	return s.ssoUser(ctx, ssoIdentity{connector: conn.Metadata.Name, method: "oidc", what: "claims",
		name: name, subject: sub, roles: roles, traits: traits}, p)
}

// ssoIdentity is what a connector's IdP vouched for, mapped.
type ssoIdentity struct {
	connector, method string
	what              string // "claims" or "attributes", for the reasons
	name, subject     string
	roles             []string
	traits            map[string][]string
}

// ssoUser turns a verified identity into a user record of type sso
// (upserted, roles recomputed at each login) and certificates, under the
// same caps, locks and current-state checks as a local user's.
func (s *Server) ssoUser(ctx context.Context, id ssoIdentity, p *ssoPending) (*wire.LoginResponse, string, error) {
	name, roles, traits, connName := id.name, id.roles, id.traits, id.connector
	pub, err := parsePublicKey(p.PublicKey)
	if err != nil {
		return nil, "bad public key", badRequest("%v", err)
	}
	var u identity.User
	rev, err := s.getJSONRev(ctx, prefixUsers+name, &u)
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, "storage error", err
	}
	if found && (u.Type != identity.TypeSSO || u.Connector != connName) {
		return nil, "a local user has this name", denied("user %q exists and does not belong to connector %q", name, connName)
	}
	if len(roles) == 0 {
		if found && len(u.Roles) > 0 {
			// The IdP no longer vouches for any role: the certificates of
			// earlier logins lose theirs now.
			if err := s.voidCerts(ctx, Caller{Kind: KindAdmin, User: "sso:" + connName}, name,
				"user "+name+" no longer maps to any role at the identity provider"); err != nil {
				return nil, "storage error", err
			}
			u.Roles, u.Traits, u.UpdatedAt, u.CertsIssuedAfter = nil, traits, s.now().UTC(), s.now().UTC()
			if err := s.casJSON(ctx, prefixUsers+name, rev, u, time.Time{}); err != nil {
				return nil, "concurrent login", fmt.Errorf("%w: a concurrent change to user %q; log in again", ErrUnauthenticated, name)
			}
		}
		return nil, "no role matches the " + id.what, denied("your identity provider's %s map to no role in connector %q; ask an admin to grant you one", id.what, connName)
	}
	if err := s.CheckLock(lock.Subject{User: name, Roles: roles}); err != nil {
		return nil, "locked", err
	}
	now := s.now().UTC()
	if !found {
		u = identity.User{Name: name, Type: identity.TypeSSO, Connector: connName, CreatedAt: now}
	}
	u.Status = identity.StatusActive
	lost := slices.ContainsFunc(u.Roles, func(r string) bool { return !slices.Contains(roles, r) })
	u.Roles, u.Traits, u.UpdatedAt = roles, traits, now
	if lost {
		// As when an admin takes a role away: the certificates of earlier
		// logins lose it now (a lock for nodes, the record for auth).
		if err := s.voidCerts(ctx, Caller{Kind: KindAdmin, User: "sso:" + connName}, name,
			"user "+name+" lost a role at an SSO login; log in again"); err != nil {
			return nil, "storage error", err
		}
		u.CertsIssuedAfter = s.now().UTC()
	}
	if found {
		err = s.casJSON(ctx, prefixUsers+name, rev, u, time.Time{})
	} else {
		err = s.createJSON(ctx, prefixUsers+name, u, time.Time{})
	}
	if err != nil {
		return nil, "concurrent login", fmt.Errorf("%w: a concurrent change to user %q; log in again", ErrUnauthenticated, name)
	}
	// Taken after the record is written: CertCurrent needs issued after
	// CreatedAt and CertsIssuedAfter.
	issued := s.now()
	for !issued.After(u.CreatedAt) || !issued.After(u.CertsIssuedAfter) {
		issued = issued.Add(time.Microsecond)
	}
	resp, err := s.issueCerts(ctx, issueParams{user: name, roles: roles, traits: traits, pub: pub, ttl: p.TTL, remote: p.RemoteAddr, issued: issued})
	if err != nil {
		return nil, "certificate issuance failed", err
	}
	s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginSuccess, User: name, RemoteAddr: p.RemoteAddr, Success: true,
		Fields: map[string]any{"method": id.method, "connector": connName, "subject": id.subject, "roles": roles}})
	return resp, "", nil
}

// ResultOIDC hands the outcome of an SSO login (OIDC or SAML) to the
// client that started it (it alone knows the result token) on the machine
// or browser that signed in at the IdP (the callback code), once.
func (s *Server) ResultOIDC(ctx context.Context, req wire.SSOResultRequest) (*wire.LoginResponse, error) {
	res, err := s.takeHandoffResult(ctx, prefixSSOResult, req.ID, req.ResultToken, req.Code, req.RemoteAddr)
	if err != nil {
		return nil, err
	}
	if res.Login == nil {
		return nil, fmt.Errorf("%w: this is not a sign-in", ErrUnauthenticated)
	}
	return res.Login, nil
}
