package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

// testIssuer is a real OIDC issuer over HTTPS: discovery, a JWKS it can
// rotate, and ID tokens signed with go-jose.
type testIssuer struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	keys    map[string]*ecdsa.PrivateKey // by key id
	public  []string                     // key ids the JWKS lists
	fetches atomic.Int64
}

func newTestIssuer(t *testing.T) *testIssuer {
	is := &testIssuer{t: t, keys: map[string]*ecdsa.PrivateKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		is.mu.Lock()
		defer is.mu.Unlock()
		var set jose.JSONWebKeySet
		for _, kid := range is.public {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &is.keys[kid].PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"})
		}
		json.NewEncoder(w).Encode(set)
	})
	is.srv = httptest.NewTLSServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

// addKey makes key kid; published puts it in the JWKS.
func (is *testIssuer) addKey(kid string, published bool) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		is.t.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys[kid] = k
	if published {
		is.public = append(is.public, kid)
	}
}

func (is *testIssuer) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw}))
}

// token is an ID token signed with key kid (signKid: with that key's
// private key, under the header kid).
func (is *testIssuer) token(kid, signKid string, std jwt.Claims, extra map[string]any) string {
	is.t.Helper()
	is.mu.Lock()
	k := is.keys[signKid]
	is.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		is.t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(std).Claims(extra).Serialize()
	if err != nil {
		is.t.Fatal(err)
	}
	return raw
}

// TestBotOIDCJoin: a federated join against a real issuer, and every
// refusal: wrong audience, wrong repository, expired, wrong signature,
// unknown key, wrong issuer; keys rotate (an unknown key id refreshes the
// JWKS, at most once per interval).
func TestBotOIDCJoin(t *testing.T) {
	defer auth.SetJWKSMinRefresh(10 * time.Second)()
	f := newFixture(t)
	ctx := context.Background()
	is := newTestIssuer(t)
	is.addKey("k1", true)
	is.addKey("other", false)
	f.addBot("deploy")
	_, err := f.a.CreateToken(ctx, auth.AdminCaller(), wire.CreateTokenRequest{Type: "oidc", Name: "gha", Bot: "deploy",
		OIDC: &wire.OIDCJoinRules{Issuer: is.srv.URL, Audience: "warden", CAPEM: is.caPEM(),
			Allow: []map[string]string{{"repository": "acme/app", "ref": "refs/heads/*"}, {"sub": "repo:acme/infra:environment:prod"}}}})
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	good := jwt.Claims{Issuer: is.srv.URL, Audience: jwt.Audience{"warden"}, Subject: "repo:acme/app:ref:refs/heads/main",
		Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), IssuedAt: jwt.NewNumericDate(now)}
	claims := map[string]any{"repository": "acme/app", "ref": "refs/heads/release/1.2"}
	join := func(raw string) (*wire.BotCerts, error) {
		return f.a.JoinBot(ctx, wire.BotJoinRequest{JoinToken: "gha", IDToken: raw, PublicKey: pubKey(t), RemoteAddr: "192.0.2.1"})
	}

	tok := is.token("k1", "k1", good, claims)
	got, err := join(tok)
	if err != nil || got.Generation != 1 || got.User != "bot-deploy" {
		t.Fatalf("OIDC join: %+v, %v", got, err)
	}
	// The second rule alone lets in too.
	other := good
	other.Subject = "repo:acme/infra:environment:prod"
	if _, err := join(is.token("k1", "k1", other, nil)); err != nil {
		t.Errorf("join by the second rule: %v", err)
	}

	refused := map[string]string{}
	wrongAud := good
	wrongAud.Audience = jwt.Audience{"someone-else"}
	refused["wrong audience"] = is.token("k1", "k1", wrongAud, claims)
	refused["wrong repository"] = is.token("k1", "k1", good, map[string]any{"repository": "evil/app", "ref": "refs/heads/main"})
	expired := good
	expired.Expiry = jwt.NewNumericDate(now.Add(-5 * time.Minute))
	expired.IssuedAt = jwt.NewNumericDate(now.Add(-10 * time.Minute))
	refused["expired"] = is.token("k1", "k1", expired, claims)
	refused["wrong signature"] = is.token("k1", "other", good, claims)
	wrongIss := good
	wrongIss.Issuer = "https://evil.example.com"
	refused["wrong issuer"] = is.token("k1", "k1", wrongIss, claims)
	noExp := good
	noExp.Expiry = nil
	refused["no expiry"] = is.token("k1", "k1", noExp, claims)
	refused["garbage"] = "a.b.c"
	for name, raw := range refused {
		if _, err := join(raw); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: %v", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}

	// An unknown key: refused, and the JWKS is fetched again at most once
	// per interval however many tokens name unknown keys.
	is.addKey("k2", false)
	before := is.fetches.Load()
	for range 5 {
		if _, err := join(is.token("k2", "k2", good, claims)); !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "no key") {
			t.Errorf("unknown key: %v", err)
		}
	}
	if n := is.fetches.Load() - before; n > 1 {
		t.Errorf("%d JWKS fetches for 5 tokens with an unknown key within the refresh interval, want at most 1", n)
	}
	// The issuer publishes k2 (a rotation): once the interval has passed,
	// the unknown key id fetches the keys again and the join works.
	is.mu.Lock()
	is.public = append(is.public, "k2")
	is.mu.Unlock()
	f.clock.Advance(11 * time.Second)
	fresh := good
	fresh.Expiry = jwt.NewNumericDate(f.clock.Now().Add(5 * time.Minute))
	if _, err := join(is.token("k2", "k2", fresh, claims)); err != nil {
		t.Errorf("join with a rotated key: %v", err)
	}

	// Audited, without the ID token.
	evs := f.events(audit.Query{Type: audit.BotJoin})
	var ok, fail int
	for _, ev := range evs {
		data, _ := json.Marshal(ev)
		if strings.Contains(string(data), tok[:40]) {
			t.Errorf("an audit event holds the ID token: %s", data)
		}
		if ev.Success {
			ok++
		} else {
			fail++
		}
	}
	if ok != 3 || fail < len(refused)+5 {
		t.Errorf("bot.join events: %d successes, %d failures", ok, fail)
	}
}

// TestOIDCJoinTokenRules: an oidc token needs an https issuer, an
// audience and non-empty rules (the issuer signs for every job it runs).
func TestOIDCJoinTokenRules(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addBot("deploy")
	for name, r := range map[string]*wire.OIDCJoinRules{
		"none":        nil,
		"http issuer": {Issuer: "http://ci.example.com", Audience: "warden", Allow: []map[string]string{{"sub": "x"}}},
		"no audience": {Issuer: "https://ci.example.com", Allow: []map[string]string{{"sub": "x"}}},
		"no rules":    {Issuer: "https://ci.example.com", Audience: "warden"},
		"empty rule":  {Issuer: "https://ci.example.com", Audience: "warden", Allow: []map[string]string{{}}},
	} {
		_, err := f.a.CreateToken(ctx, auth.AdminCaller(), wire.CreateTokenRequest{Type: "oidc", Name: "t", Bot: "deploy", OIDC: r})
		if !errors.Is(err, auth.ErrBadRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := f.a.CreateToken(ctx, auth.AdminCaller(), wire.CreateTokenRequest{Type: "oidc", Name: "t", Bot: "nobody",
		OIDC: &wire.OIDCJoinRules{Issuer: "https://ci.example.com", Audience: "w", Allow: []map[string]string{{"sub": "x"}}}}); err == nil {
		t.Error("an oidc token for a bot that does not exist")
	}
}
