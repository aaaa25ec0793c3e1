package auth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// Federated join: an OIDC join token trusts a CI provider's workload
// identity tokens (GitHub Actions, GitLab CI) for one bot, under rules on
// their claims. The bot presents the job's ID token; auth checks its
// signature against the issuer's JWKS (discovered, cached, refreshed when a
// token names an unknown key, at most once per jwksMinRefresh), its issuer,
// audience and expiry, then the rules.
const (
	maxIDTokenLen = 16 << 10
	// maxIssuerDoc bounds what auth reads of an issuer's discovery
	// document and JWKS.
	maxIssuerDoc = 1 << 20
	// jwksMaxAge: keys older than this are fetched again (a key the issuer
	// withdrew stops working).
	jwksMaxAge = time.Hour
	// idTokenLeeway is the clock skew allowed on exp, nbf and iat.
	idTokenLeeway = 30 * time.Second
	maxAllowRules = 32
	maxRuleClaims = 16
)

// jwksMinRefresh is the least time between two fetches of one issuer's
// keys: tokens naming unknown keys cannot make auth fetch more often.
var jwksMinRefresh = 10 * time.Second

var idTokenAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// checkOIDCJoinRules validates an OIDC join token's rules.
func checkOIDCJoinRules(r *wire.OIDCJoinRules) error {
	if r == nil {
		return errors.New("an oidc token needs an issuer, an audience and at least one allow rule")
	}
	u, err := url.Parse(r.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || len(r.Issuer) > 512 {
		return fmt.Errorf("issuer %q must be an https URL without query or fragment", r.Issuer)
	}
	if r.Audience == "" || len(r.Audience) > 256 {
		return errors.New("an oidc token needs an audience (--audience): the one your CI job asks its ID token for")
	}
	if len(r.Allow) == 0 || len(r.Allow) > maxAllowRules {
		return fmt.Errorf("an oidc token needs 1 to %d allow rules on the ID token's claims (--allow repository=org/repo,ref=refs/heads/main): the issuer signs tokens for every job it runs, not only yours", maxAllowRules)
	}
	for i, rule := range r.Allow {
		if len(rule) == 0 || len(rule) > maxRuleClaims {
			return fmt.Errorf("allow rule %d: 1 to %d claims", i+1, maxRuleClaims)
		}
		for k, v := range rule {
			if k == "" || len(k) > 64 || len(v) > 256 || v == "" {
				return fmt.Errorf("allow rule %d: claim %q: names up to 64 bytes, values 1 to 256", i+1, k)
			}
		}
	}
	if r.CAPEM != "" {
		if len(r.CAPEM) > 64<<10 || !x509.NewCertPool().AppendCertsFromPEM([]byte(r.CAPEM)) {
			return errors.New("the issuer CA is not a PEM certificate")
		}
	}
	return nil
}

// useOIDCToken checks an ID token against the OIDC join token name and
// returns its bot and the token's claims.
func (s *Server) useOIDCToken(ctx context.Context, name, raw string) (string, map[string]any, error) {
	var t Token
	err := s.getJSON(ctx, oidcTokenKey(name), &t)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return "", nil, fmt.Errorf("%w: there is no OIDC join token %q", ErrUnauthenticated, name)
	case err != nil:
		return "", nil, err
	case t.Type != tokenTypeOIDC || t.OIDC == nil:
		return "", nil, fmt.Errorf("%w: join token %q is not an oidc token", ErrUnauthenticated, name)
	case !t.Expires.IsZero() && !s.now().Before(t.Expires):
		return "", nil, fmt.Errorf("%w: the OIDC join token %q expired", ErrUnauthenticated, name)
	}
	claims, err := s.verifyIDToken(ctx, t.OIDC, raw)
	if err != nil {
		return "", claims, fmt.Errorf("%w: the ID token is refused: %v", ErrUnauthenticated, err)
	}
	return t.Bot, claims, nil
}

// verifyIDToken checks raw's signature, issuer, audience and times, then
// the allow rules, and returns its claims (those it could read, on a
// refusal after the signature check).
func (s *Server) verifyIDToken(ctx context.Context, r *wire.OIDCJoinRules, raw string) (map[string]any, error) {
	if raw == "" {
		return nil, errors.New("no ID token")
	}
	if len(raw) > maxIDTokenLen {
		return nil, fmt.Errorf("longer than %d bytes", maxIDTokenLen)
	}
	tok, err := jwt.ParseSigned(raw, idTokenAlgs)
	if err != nil {
		return nil, fmt.Errorf("not a signed JWT: %v", err)
	}
	if len(tok.Headers) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	key, err := s.jwks.issuer(r).key(ctx, tok.Headers[0].KeyID, s.now())
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	claims := map[string]any{}
	if err := tok.Claims(key, &std, &claims); err != nil {
		return nil, fmt.Errorf("bad signature: %v", err)
	}
	if std.Expiry == nil {
		return claims, errors.New("it has no expiry (exp)")
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: r.Issuer, AnyAudience: jwt.Audience{r.Audience}, Time: s.now()}, idTokenLeeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return claims, fmt.Errorf("issuer %q is not %q", std.Issuer, r.Issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return claims, fmt.Errorf("audience %q does not include %q", []string(std.Audience), r.Audience)
	case errors.Is(err, jwt.ErrExpired):
		return claims, fmt.Errorf("it expired at %s", std.Expiry.Time().UTC().Format(time.RFC3339))
	case err != nil:
		return claims, err
	}
	for _, rule := range r.Allow {
		if ruleMatches(rule, claims) {
			return claims, nil
		}
	}
	return claims, fmt.Errorf("no allow rule of the join token matches its claims (sub %q)", std.Subject)
}

// ruleMatches reports whether every claim of rule matches claims (a list
// claim, such as aud, matches when one of its values does).
func ruleMatches(rule map[string]string, claims map[string]any) bool {
	for k, pattern := range rule {
		var vals []string
		switch v := claims[k].(type) {
		case string:
			vals = []string{v}
		case bool, float64:
			vals = []string{fmt.Sprint(v)}
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					vals = append(vals, s)
				}
			}
		}
		ok := false
		for _, v := range vals {
			if matchGlob(pattern, v) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// matchGlob matches s against pattern, where * is any run of characters
// ('/' included) and ? any one character; nothing else is special.
func matchGlob(pattern, s string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			// A star is always a wildcard, even where s holds a '*' too.
			star, mark = p, n
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[n]):
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// jwksCache holds the keys of the issuers OIDC join tokens trust.
type jwksCache struct {
	mu sync.Mutex
	m  map[string]*issuerKeys
}

// issuerKeys are one issuer's keys (by issuer and the CA it is reached
// with).
type issuerKeys struct {
	mu      sync.Mutex
	issuer  string
	hc      *http.Client
	keys    jose.JSONWebKeySet
	fetched time.Time // the last fetch (or attempt)
	err     error     // the client could not be made
}

func (c *jwksCache) issuer(r *wire.OIDCJoinRules) *issuerKeys {
	sum := sha256.Sum256([]byte(r.CAPEM))
	id := r.Issuer + "\x00" + string(sum[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*issuerKeys{}
	}
	if ik := c.m[id]; ik != nil {
		return ik
	}
	ik := &issuerKeys{issuer: r.Issuer, hc: &http.Client{Timeout: 10 * time.Second}}
	if r.CAPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(r.CAPEM)) {
			ik.err = errors.New("the join token's issuer CA is not a PEM certificate")
		}
		ik.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	c.m[id] = ik
	return ik
}

// key returns the issuer's key kid, fetching the keys when kid is unknown
// (at most once per jwksMinRefresh) or the keys are old.
func (ik *issuerKeys) key(ctx context.Context, kid string, now time.Time) (*jose.JSONWebKey, error) {
	if ik.err != nil {
		return nil, ik.err
	}
	ik.mu.Lock()
	defer ik.mu.Unlock()
	find := func() *jose.JSONWebKey {
		for _, k := range ik.keys.Key(kid) {
			if k.Use == "" || k.Use == "sig" {
				return &k
			}
		}
		return nil
	}
	stale := now.Sub(ik.fetched) > jwksMaxAge
	if k := find(); k != nil && !stale {
		return k, nil
	}
	if !stale && now.Sub(ik.fetched) < jwksMinRefresh {
		return nil, fmt.Errorf("the issuer has no key %q", kid)
	}
	ik.fetched = now
	if err := ik.fetch(ctx); err != nil {
		if k := find(); k != nil {
			return k, nil // the old keys stand until the issuer answers again
		}
		return nil, fmt.Errorf("cannot fetch the issuer's keys: %v", err)
	}
	if k := find(); k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("the issuer has no key %q", kid)
}

func (ik *issuerKeys) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := ik.getJSON(ctx, strings.TrimSuffix(ik.issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
		return err
	}
	if doc.Issuer != ik.issuer {
		return fmt.Errorf("the discovery document names issuer %q", doc.Issuer)
	}
	if u, err := url.Parse(doc.JWKSURI); err != nil || u.Scheme != "https" {
		return fmt.Errorf("jwks_uri %q is not an https URL", doc.JWKSURI)
	}
	var set jose.JSONWebKeySet
	if err := ik.getJSON(ctx, doc.JWKSURI, &set); err != nil {
		return err
	}
	ik.keys = set
	return nil
}

func (ik *issuerKeys) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := ik.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxIssuerDoc+1))
	if err != nil {
		return err
	}
	if len(data) > maxIssuerDoc {
		return fmt.Errorf("GET %s: more than %d bytes", u, maxIssuerDoc)
	}
	return json.Unmarshal(data, v)
}
