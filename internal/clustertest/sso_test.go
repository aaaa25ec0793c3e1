//go:build integration

package clustertest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	capoidc "github.com/hashicorp/cap/oidc"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/cli"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

const ssoSecret = "oidc-client-secret-5f1c0ffee"

// ssoIdP is hashicorp/cap's test OIDC provider (discovery, JWKS, the code
// flow with a login form, signed ID tokens with the nonce), with its token
// endpoint behind a check of what cap does not check: the client secret,
// and that the PKCE verifier is the one whose S256 challenge the browser
// carried to /authorize.
type ssoIdP struct {
	tp         *capoidc.TestProvider
	mu         sync.Mutex
	challenges map[string]bool
	tokens     int
	// tokenTime is the time spent in the IdP's token endpoint.
	tokenTime time.Duration
	// tokenURL is the token endpoint (the check in front of cap's).
	tokenURL string
}

func startSSOIdP(t testing.TB, redirect string) *ssoIdP {
	idp := &ssoIdP{tp: capoidc.StartTestProvider(t, capoidc.WithNoTLS()), challenges: map[string]bool{}}
	idp.tp.SetClientCreds("warden", ssoSecret)
	idp.tp.SetAllowedRedirectURIs([]string{redirect})
	idp.tp.SetSupportedScopes("openid", "email", "profile")
	idp.tp.SetSubjectInfo(map[string]*capoidc.TestSubject{
		"alice": {Password: "alice-pw", CustomClaims: map[string]any{"email": "alice@example.com", "preferred_username": "alice", "groups": []string{"staff", "ops-team", "dbas"},
			"unix_login": osLogin}},
		"carol": {Password: "carol-pw", CustomClaims: map[string]any{"preferred_username": "carol", "groups": []string{"ops-team"}}},
		"bob":   {Password: "bob-pw", CustomClaims: map[string]any{"email": "bob@example.com", "preferred_username": "bob", "groups": []string{"sales"}}},
	})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() {
			idp.mu.Lock()
			idp.tokenTime += time.Since(start)
			idp.mu.Unlock()
		}()
		if err := r.ParseForm(); err != nil || r.URL.Path != "/token" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if id, secret, ok := r.BasicAuth(); !ok || id != "warden" || secret != ssoSecret {
			if r.PostForm.Get("client_secret") != ssoSecret {
				http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
				return
			}
		}
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		idp.mu.Lock()
		ok := idp.challenges[base64.RawURLEncoding.EncodeToString(sum[:])]
		idp.tokens++
		idp.mu.Unlock()
		if !ok {
			http.Error(w, `{"error":"invalid_grant","error_description":"PKCE verifier does not match"}`, http.StatusBadRequest)
			return
		}
		form := r.PostForm
		form.Set("code_verifier", idp.tp.PKCEVerifier().Verifier())
		resp, err := http.PostForm(idp.tp.Addr()+"/token", form)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(front.Close)
	idp.tokenURL = front.URL + "/token"
	idp.tp.SetAdditionalConfiguration(map[string]any{"token_endpoint": idp.tokenURL})
	return idp
}

// browse plays the browser: it opens the sign-in URL, signs in on the
// IdP's form as user, and follows the redirects through the proxy's
// callback to the CLI's loopback listener.
func (idp *ssoIdP) browse(t *testing.T, tlsCA, authURL, user, password string) {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || q.Get("nonce") == "" {
		t.Fatalf("sign-in URL lacks PKCE S256, state or nonce: %s", authURL)
	}
	idp.mu.Lock()
	idp.challenges[q.Get("code_challenge")] = true
	idp.mu.Unlock()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(tlsCA))
	var callback string
	b := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if strings.HasSuffix(r.URL.Path, "/v1/sso/oidc/callback") {
				callback = r.URL.String()
			}
			return nil
		}}
	_, code := idpLoginForm(t, b, authURL)
	resp, err := b.PostForm(idp.tp.Addr()+"/login", url.Values{"uname": {user}, "psw": {password}, "state": {q.Get("state")},
		"code": {code}, "redirect_uri": {q.Get("redirect_uri")}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Hostname() != "127.0.0.1" || resp.Request.URL.Path != "/callback" {
		t.Fatalf("the browser ended at %s with %d: %s", resp.Request.URL, resp.StatusCode, body)
	}
	// The state is single-use: the same callback again is refused.
	resp, err = b.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "already used") {
		t.Fatalf("a replayed callback got %d: %s", resp.StatusCode, body)
	}
}

// webSignin plays a browser on the web UI: the sign-in page's "Sign in
// with corp" link, the IdP's form, and back to the servers page.
func (idp *ssoIdP) webSignin(t *testing.T, tlsCA, base, user, password string) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(tlsCA))
	jar, _ := cookiejar.New(nil)
	b := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Path == "/authorize" {
				idp.mu.Lock()
				idp.challenges[r.URL.Query().Get("code_challenge")] = true
				idp.mu.Unlock()
			}
			return nil
		}}
	get := func(u string) (*http.Response, string) {
		resp, err := b.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	_, page := get(base + "/web/login?next=/web/servers")
	m := regexp.MustCompile(`href="(/web/login/sso/corp\?next=[^"]*)">Sign in with corp`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no Sign in with corp on the sign-in page: %s", page)
	}
	resp, page := get(base + strings.ReplaceAll(m[1], "&amp;", "&"))
	code := regexp.MustCompile(`name="code" type="hidden" value="([^"]+)"`).FindStringSubmatch(page)
	if code == nil || resp.Request.URL.Path != "/authorize" {
		t.Fatalf("no login form from the IdP at %s: %s", resp.Request.URL, page)
	}
	q := resp.Request.URL.Query()
	resp, err := b.PostForm(idp.tp.Addr()+"/login", url.Values{"uname": {user}, "psw": {password}, "state": {q.Get("state")},
		"code": {code[1]}, "redirect_uri": {q.Get("redirect_uri")}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/web/servers" {
		t.Fatalf("the browser ended at %s with %d: %s", resp.Request.URL, resp.StatusCode, body)
	}
	return string(body)
}

// ssoLogin runs `warden login --sso corp --browser none` as a user would,
// and signs in with the URL it prints.
func ssoLogin(t *testing.T, c *Cluster, idp *ssoIdP, tlsCA, user, password string) (string, Result) {
	t.Helper()
	home := t.TempDir()
	var out, errb syncbuf.Buffer
	ctx, cancel := context.WithDeadline(context.Background(), patience.Deadline(t))
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- cli.RunIO(ctx, []string{"--data-dir", c.DataDir, "--home", home, "login", "--proxy", c.ProxyAddr(),
			"--sso", "corp", "--browser", "none"}, &cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	}()
	var authURL string
	testkit.WaitFor(t, "the sign-in URL", func() bool {
		m := regexp.MustCompile(`(?m)^\s+(http://\S+/authorize\?\S+)$`).FindStringSubmatch(errb.String())
		if m != nil {
			authURL = m[1]
		}
		return m != nil
	})
	idp.browse(t, tlsCA, authURL, user, password)
	code := <-done
	return home, Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// ssoOpsRole is the role the SSO tests' connectors map their staff to:
// the logins the IdP gives, every node. YAML, ending with a document
// separator for the connector that follows.
const ssoOpsRole = `kind: role
metadata: {name: ops}
spec:
  allow:
    logins: ['{{external.logins}}']
    node_labels: {'*': '*'}
---
`

// TestOIDCLogin: an oidc connector applied with warden apply, warden login
// --sso against a real OIDC provider; roles and logins from the claims,
// OpenSSH to the node with them; a user whose claims map to no role is
// refused with that reason; the secret shows nowhere.
func TestOIDCLogin(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "node1"})
	ctx := context.Background()
	ping, err := c.Admin.Ping(ctx)
	if err != nil {
		t.Fatal(err)
	}
	redirect := "https://" + c.ProxyAddr() + "/v1/sso/oidc/callback"
	idp := startSSOIdP(t, redirect)
	secretFile := filepath.Join(t.TempDir(), "oidc-secret")
	if err := os.WriteFile(secretFile, []byte(ssoSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An inline secret is refused.
	inline := c.Warden(t.TempDir(), strings.NewReader("kind: oidc\nmetadata: {name: corp}\nspec: {client_secret: x}\n"), "apply", "-f", "-")
	if inline.Code == 0 || !strings.Contains(inline.Stderr, "client_secret_file") {
		t.Fatalf("apply with an inline secret: %s", inline)
	}
	// An invalid connector is refused before anything is applied.
	bad := c.Warden(t.TempDir(), strings.NewReader("kind: role\nmetadata: {name: early}\nspec: {allow: {logins: [x]}}\n---\n"+
		"kind: oidc\nmetadata: {name: corp}\nspec: {issuer_url: 'http://idp.example.com', client_id: w, client_secret_env: S, "+
		"redirect_url: 'https://p/cb', claims_to_roles: [{claim: g, value: x, roles: [early]}]}\n"), "apply", "-f", "-")
	if bad.Code == 0 || !strings.Contains(bad.Stderr, "must be https") {
		t.Fatalf("apply of an http issuer: %s", bad)
	}
	if _, err := c.Admin.GetRole(ctx, "early"); err == nil {
		t.Fatal("a role was applied beside an invalid connector")
	}
	res := c.Warden(t.TempDir(), strings.NewReader(fmt.Sprintf(ssoOpsRole+`kind: role
metadata: {name: db}
spec:
  allow:
    rules: [{resources: [session], verbs: [list]}]
---
kind: oidc
metadata: {name: corp}
spec:
  issuer_url: %s
  client_id: warden
  client_secret_file: %s
  redirect_url: %s
  claims_to_roles:
  - {claim: groups, value: 'ops-*', roles: [ops]}
  - {claim: groups, value: '^db(a|s)+$', roles: [db]}
  traits: {logins: unix_login}
`, idp.tp.Addr(), secretFile, redirect)), "apply", "-f", "-")
	if res.Code != 0 || !strings.Contains(res.Stdout, `oidc connector "corp" applied`) {
		t.Fatalf("apply: %s", res)
	}

	home, res := ssoLogin(t, c, idp, ping.TLSCA, "alice", "alice-pw")
	if res.Code != 0 {
		t.Fatalf("login --sso: %s", res)
	}
	if !strings.Contains(res.Stdout, "User:    alice") || !strings.Contains(res.Stdout, "Roles:   db, ops") ||
		!strings.Contains(res.Stdout, "Logins:  "+osLogin) {
		t.Fatalf("login --sso did not map the claims: %s", res)
	}
	r := Run(t, nil, "ssh", sshArgs(c.SSHConfig(home), osLogin+"@node1", "whoami")...)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != osLogin {
		t.Fatalf("ssh with the SSO certificate: %s", r)
	}

	// The web UI's "Sign in with corp" leads through the IdP to a session.
	t.Run("web", func(t *testing.T) {
		page := idp.webSignin(t, ping.TLSCA, "https://"+c.ProxyAddr(), "alice", "alice-pw")
		if !strings.Contains(page, "alice") || !strings.Contains(page, "node1") {
			t.Fatalf("after the web sign-in: %s", page)
		}
	})
	// Whoever begins a sign-in and sends the IdP's link to alice does not
	// get her certificates or session: the CLI's, then the web UI's (a
	// token request each).
	t.Run("hand-off to another's browser", func(t *testing.T) { ssoHijackCLI(t, c, idp, ping.TLSCA) })
	t.Run("web hand-off to another's browser", func(t *testing.T) { ssoHijackWeb(t, c, idp, ping.TLSCA) })
	// The IdP rotates its signing key: auth fetches the new JWKS for the
	// unknown key id, and the next login works. Alice has left dbas
	// meanwhile: the new login has ops only, and the certificate of the
	// first login, which still names db, is refused.
	pub, priv := capoidc.TestGenerateKeys(t)
	idp.tp.SetSigningKeys(priv, pub, capoidc.ES256, "rotated")
	idp.tp.SetSubjectInfo(map[string]*capoidc.TestSubject{
		"alice": {Password: "alice-pw", CustomClaims: map[string]any{"preferred_username": "alice", "groups": []string{"ops-team"}, "unix_login": osLogin}},
		"carol": {Password: "carol-pw", CustomClaims: map[string]any{"preferred_username": "carol", "groups": []string{"ops-team"}}},
		"bob":   {Password: "bob-pw", CustomClaims: map[string]any{"preferred_username": "bob", "groups": []string{"sales"}}},
	})
	home2, res := ssoLogin(t, c, idp, ping.TLSCA, "alice", "alice-pw")
	if res.Code != 0 || !strings.Contains(res.Stdout, "Roles:   ops\n") {
		t.Fatalf("login --sso after the IdP's key rotation and a group left: %s", res)
	}
	if ls := c.Warden(home, nil, "ls"); ls.Code == 0 || !strings.Contains(ls.Stderr, "lost a role") {
		t.Fatalf("ls with the certificate that names the lost role: %s", ls)
	}
	r = Run(t, nil, "ssh", sshArgs(c.SSHConfig(home2), osLogin+"@node1", "whoami")...)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != osLogin {
		t.Fatalf("ssh with the certificate of the new login: %s", r)
	}
	home = home2
	// An SSO user has no password to reset (an invite would give them one).
	if res := c.Warden(t.TempDir(), nil, "users", "reset", "alice"); res.Code == 0 || !strings.Contains(res.Stderr, "nothing to reset") {
		t.Fatalf("users reset of an SSO user: %s", res)
	}

	// Bob's groups map to no role: refused, with the reason.
	_, res = ssoLogin(t, c, idp, ping.TLSCA, "bob", "bob-pw")
	if res.Code == 0 || !strings.Contains(res.Stderr, "map to no role") {
		t.Fatalf("login --sso of an unmapped user: %s", res)
	}

	// A local user of the same name is never taken over.
	c.AddUser("carol", []string{"access"}, []string{osLogin})
	if _, res := ssoLogin(t, c, idp, ping.TLSCA, "carol", "carol-pw"); res.Code == 0 || !strings.Contains(res.Stderr, `does not belong to connector "corp"`) {
		t.Fatalf("login --sso as a local user's name: %s", res)
	}
	users, err := c.Admin.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if u.Name == "alice" && (u.Type != "sso" || u.Connector != "corp") || u.Name == "carol" && u.Type != "" {
			t.Fatalf("user records: %+v", users)
		}
	}

	// Roles come from the claims at every login: once alice's groups map
	// to none, her login is refused and her earlier certificate has lost
	// its role (auth refuses it).
	idp.tp.SetSubjectInfo(map[string]*capoidc.TestSubject{
		"alice": {Password: "alice-pw", CustomClaims: map[string]any{"preferred_username": "alice", "groups": []string{"staff"}}},
	})
	if _, res := ssoLogin(t, c, idp, ping.TLSCA, "alice", "alice-pw"); res.Code == 0 || !strings.Contains(res.Stderr, "map to no role") {
		t.Fatalf("login --sso after losing the group: %s", res)
	}
	if ls := c.Warden(home, nil, "ls"); ls.Code == 0 || !strings.Contains(ls.Stderr, "no longer maps to any role") {
		t.Fatalf("ls with the certificate of the earlier login: %s", ls)
	}

	// ID tokens that fail a check are refused: each forged claim, in
	// turn, in an otherwise good login of someone the mapping would admit.
	for _, tc := range []struct {
		name, claim string
		value       any
		want        string
	}{
		{"nonce", "nonce", "0123456789abcdef", "nonce does not match"},
		{"audience", "aud", []string{"someone-else"}, "audience"},
		{"issuer", "iss", "http://127.0.0.1:1", "issued by a different provider"},
		{"expired", "exp", float64(time.Now().Add(-time.Hour).Unix()), "expired"},
		{"issued in the future", "iat", float64(time.Now().Add(time.Hour).Unix()), "not now"},
		{"issued long ago", "iat", float64(time.Now().Add(-time.Hour).Unix()), "not now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp.tp.SetSubjectInfo(map[string]*capoidc.TestSubject{
				"mallory": {Password: "m-pw", CustomClaims: map[string]any{"preferred_username": "mallory", "groups": []string{"ops-team"}, tc.claim: tc.value}},
			})
			_, res := ssoLogin(t, c, idp, ping.TLSCA, "mallory", "m-pw")
			if res.Code == 0 || !strings.Contains(res.Stderr, tc.want) {
				t.Fatalf("login with a forged %s: %s", tc.claim, res)
			}
		})
	}
	if users, _ := c.Admin.ListUsers(ctx); slices.ContainsFunc(users, func(u auth.UserInfo) bool { return u.Name == "mallory" }) {
		t.Fatal("a refused ID token made a user record")
	}

	// The secret is nowhere: not in get (text, yaml, json), not in the audit log.
	for _, format := range []string{"text", "yaml", "json"} {
		g := c.Warden(t.TempDir(), nil, "get", "oidc", "corp", "-o", format)
		if g.Code != 0 || !strings.Contains(g.Stdout, "corp") || strings.Contains(g.Stdout+g.Stderr, ssoSecret) {
			t.Fatalf("get oidc -o %s: %s", format, g)
		}
	}
	evs, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.UserLogin, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var ok, refused bool
	for _, e := range evs {
		b, _ := json.Marshal(e)
		if strings.Contains(string(b), ssoSecret) {
			t.Fatalf("the secret is in the audit log: %s", b)
		}
		if e.Fields["method"] != "oidc" || e.Fields["connector"] != "corp" {
			continue
		}
		ok = ok || (e.Success && e.User == "alice")
		refused = refused || (!e.Success && e.Error == "no role matches the claims")
	}
	if !ok || !refused {
		t.Fatalf("user.login events with method oidc: success %v, refusal %v: %+v", ok, refused, evs)
	}
	idp.mu.Lock()
	tokens := idp.tokens
	idp.mu.Unlock()
	if tokens != 14 {
		t.Fatalf("%d token requests, want 14", tokens)
	}
}

// TestOIDCProviderUnreachable: a connector whose IdP does not answer gives
// a clear error at once.
func TestOIDCProviderUnreachable(t *testing.T) {
	c := New(t, Options{NoNode: true})
	secretFile := filepath.Join(t.TempDir(), "oidc-secret")
	if err := os.WriteFile(secretFile, []byte(ssoSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	c.ApplyRoles(fmt.Sprintf(`kind: oidc
metadata: {name: corp}
spec:
  issuer_url: http://127.0.0.1:%s
  client_id: warden
  client_secret_file: %s
  redirect_url: https://%s/v1/sso/oidc/callback
  claims_to_roles: [{claim: groups, value: ops, roles: [access]}]
`, strconv.Itoa(testkit.FreePort(t)), secretFile, c.ProxyAddr()))
	ssoLoginRefused(t, c, "corp", `identity provider of connector "corp" is unreachable`, "with the IdP down")
	ssoLoginRefused(t, c, "nope", `no SSO connector "nope"`, "with an unknown connector")
}

// ssoLoginRefused runs warden login --sso connector, which must fail with
// want in its error (what says how, for the failure message).
func ssoLoginRefused(t *testing.T, c *Cluster, connector, want, what string) {
	t.Helper()
	res := c.Warden(t.TempDir(), nil, "login", "--proxy", c.ProxyAddr(), "--sso", connector, "--browser", "none")
	if res.Code == 0 || !strings.Contains(res.Stderr, want) {
		t.Fatalf("login --sso %s: %s", what, res)
	}
}

// BenchmarkSSOLogin measures the server-side time Warden adds to an OIDC
// login: start, the IdP's redirect back through the proxy's callback, and
// the CLI's fetch of the certificates, each an HTTPS request to the proxy,
// less the time the IdP's token endpoint took. The IdP's sign-in page is
// outside the measure. It reports the median (p50-ms).
func BenchmarkSSOLogin(b *testing.B) {
	c := New(b, Options{NoNode: true})
	ctx := context.Background()
	ping, err := c.Admin.Ping(ctx)
	if err != nil {
		b.Fatal(err)
	}
	redirect := "https://" + c.ProxyAddr() + "/v1/sso/oidc/callback"
	idp := startSSOIdP(b, redirect)
	secretFile := filepath.Join(b.TempDir(), "oidc-secret")
	if err := os.WriteFile(secretFile, []byte(ssoSecret), 0o600); err != nil {
		b.Fatal(err)
	}
	c.ApplyRoles(fmt.Sprintf(`kind: oidc
metadata: {name: corp}
spec:
  issuer_url: %s
  client_id: warden
  client_secret_file: %s
  redirect_url: %s
  claims_to_roles: [{claim: groups, value: 'ops-*', roles: [access]}]
`, idp.tp.Addr(), secretFile, redirect))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ping.TLSCA))
	browser := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	key := newKeyLine(b)
	call := func(resp *http.Response, err error) (*http.Response, string) {
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		begin, err := c.Admin.BeginOIDC(ctx, wire.SSOBeginRequest{Connector: "corp", PublicKey: key, ClientRedirect: "http://127.0.0.1:1/callback"})
		if err != nil {
			b.Fatal(err)
		}
		server := time.Since(t0)
		u, _ := url.Parse(begin.AuthURL)
		q := u.Query()
		idp.mu.Lock()
		idp.challenges[q.Get("code_challenge")] = true
		idp.mu.Unlock()
		_, page := call(browser.Get(begin.AuthURL))
		m := regexp.MustCompile(`name="code" type="hidden" value="([^"]+)"`).FindStringSubmatch(page)
		if m == nil {
			b.Fatalf("no login form: %s", page)
		}
		resp, _ := call(browser.PostForm(idp.tp.Addr()+"/login", url.Values{"uname": {"alice"}, "psw": {"alice-pw"},
			"state": {q.Get("state")}, "code": {m[1]}, "redirect_uri": {q.Get("redirect_uri")}}))
		idp.mu.Lock()
		before := idp.tokenTime
		idp.mu.Unlock()
		t1 := time.Now()
		resp, body := call(browser.Get(resp.Header.Get("Location")))
		cb := time.Since(t1)
		idp.mu.Lock()
		cb -= idp.tokenTime - before
		idp.mu.Unlock()
		if resp.StatusCode != http.StatusFound {
			b.Fatalf("callback: %d %s", resp.StatusCode, body)
		}
		back, _ := url.Parse(resp.Header.Get("Location"))
		t2 := time.Now()
		if _, err := c.Admin.ResultOIDC(ctx, wire.SSOResultRequest{ID: begin.ID, ResultToken: begin.ResultToken, Code: back.Query().Get("code")}); err != nil {
			b.Fatal(err)
		}
		times = append(times, server+cb+time.Since(t2))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2])/float64(time.Millisecond), "p50-ms")
}

// newKeyLine makes an ed25519 key and returns its public half as an
// authorized_keys line, for a login's public key.
func newKeyLine(tb testing.TB) string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sshPub, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
}

// idpLoginForm opens the test IdP's sign-in page at authURL with browser
// and returns the response (body read and closed) and the form's hidden
// code.
func idpLoginForm(t *testing.T, browser *http.Client, authURL string) (*http.Response, string) {
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="code" type="hidden" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no login form from the IdP: %s", page)
	}
	return resp, string(m[1])
}
