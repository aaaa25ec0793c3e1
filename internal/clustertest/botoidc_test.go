//go:build integration

package clustertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestBotFederatedJoin: a CI job with no secret at all. A real OIDC issuer
// over HTTPS (discovery, JWKS, ES256 tokens from go-jose) stands in for
// the CI provider; `warden tokens add --type oidc` trusts it for a bot
// under rules on the claims, and `warden bot start --oneshot` with the
// job's ID token in an environment variable gets certificates that ssh
// uses. A token of another repository is refused with the reason.
func TestBotFederatedJoin(t *testing.T) {
	EnsureOSUser(t, "wbot")
	c := New(t, Options{NodeName: "node1"})
	c.ApplyRoles(botRoles)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "ci-1", Algorithm: "ES256", Use: "sig"}}})
	})
	srv = httptest.NewTLSServer(mux)
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "issuer-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	idToken := func(repo string) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "ci-1"}}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		raw, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: srv.URL, Audience: jwt.Audience{"warden"}, Subject: "repo:" + repo + ":ref:refs/heads/main",
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute))}).
			Claims(map[string]any{"repository": repo, "ref": "refs/heads/main", "environment": "prod"}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}

	admin := t.TempDir()
	if res := c.Warden(admin, nil, "bots", "add", "gha", "--roles", "ci", "--logins", "wbot"); res.Code != 0 {
		t.Fatalf("bots add: %s", res)
	}
	res := c.Warden(admin, nil, "tokens", "add", "--type", "oidc", "--name", "gha-deploy", "--bot", "gha", "--issuer", srv.URL,
		"--audience", "warden", "--allow", "repository=acme/*,ref=refs/heads/main,environment=prod", "--issuer-ca", caFile)
	if res.Code != 0 {
		t.Fatalf("tokens add --type oidc: %s", res)
	}
	m := regexp.MustCompile(`--ca-pin (\S+) --oneshot`).FindStringSubmatch(res.Stdout)
	if m == nil {
		t.Fatalf("no command in:\n%s", res.Stdout)
	}
	if ls := c.Warden(admin, nil, "tokens", "ls"); !strings.Contains(ls.Stdout, "gha-deploy") || !strings.Contains(ls.Stdout, "oidc") {
		t.Errorf("tokens ls: %s", ls)
	}
	join := func(repo string) (Result, string) {
		dest := filepath.Join(t.TempDir(), "out")
		return runEnv(t, []string{"CI_ID_TOKEN=" + idToken(repo)}, WardenBinary, "bot", "start", "--proxy", c.ProxyAddr(), "--ca-pin", m[1],
			"--oneshot", "--join-token", "gha-deploy", "--id-token-env", "CI_ID_TOKEN", "--dest", dest, "--storage", filepath.Join(t.TempDir(), "s")), dest
	}
	ok, dest := join("acme/app")
	if ok.Code != 0 {
		t.Fatalf("federated join: %s", ok)
	}
	if r := Run(t, nil, "ssh", "-F", filepath.Join(dest, "ssh_config"), "wbot@node1", "echo", "from CI"); r.Code != 0 || !strings.Contains(r.Stdout, "from CI") {
		t.Fatalf("ssh after a federated join: %s", r)
	}
	bad, _ := join("evil/app")
	if bad.Code == 0 || !strings.Contains(bad.Stderr, "no allow rule") {
		t.Errorf("a token of another repository: %s", bad)
	}
}
