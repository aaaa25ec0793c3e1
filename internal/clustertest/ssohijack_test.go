//go:build integration

package clustertest

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/wire"
)

// ssoHijackCLI: someone begins `warden login --sso corp` (the API calls
// the CLI makes) and sends the IdP's link to alice, who signs in there.
// Her browser comes back through the proxy to the loopback of HER
// machine, with the login id and a one-time code; the one who began
// holds the id and result token but not the code, and is refused her
// certificates (audited). The code from alice's browser is what hands
// them over.
func ssoHijackCLI(t *testing.T, c *Cluster, idp *ssoIdP, tlsCA string) {
	ctx := context.Background()
	begin, err := c.Admin.BeginOIDC(ctx, wire.SSOBeginRequest{Connector: "corp", PublicKey: newKeyLine(t),
		ClientRedirect: "http://127.0.0.1:1/callback"})
	if err != nil {
		t.Fatal(err)
	}
	// Alice's browser: the IdP's sign-in, the proxy's callback, and the
	// redirect to her loopback (nothing listens there: not the attacker).
	victim := HTTPSClient(tlsCA, nil)
	victim.CheckRedirect = func(r *http.Request, _ []*http.Request) error {
		if r.URL.Path == "/authorize" {
			idp.mu.Lock()
			idp.challenges[r.URL.Query().Get("code_challenge")] = true
			idp.mu.Unlock()
		}
		if r.URL.Hostname() == "127.0.0.1" && r.URL.Path == "/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}
	au, _ := url.Parse(begin.AuthURL)
	idp.mu.Lock()
	idp.challenges[au.Query().Get("code_challenge")] = true
	idp.mu.Unlock()
	resp, code := idpLoginForm(t, victim, begin.AuthURL)
	q := resp.Request.URL.Query()
	resp, err = victim.PostForm(idp.tp.Addr()+"/login", url.Values{"uname": {"alice"}, "psw": {"alice-pw"}, "state": {q.Get("state")},
		"code": {code}, "redirect_uri": {q.Get("redirect_uri")}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || back.Hostname() != "127.0.0.1" || back.Query().Get("id") != begin.ID || back.Query().Get("code") == "" {
		t.Fatalf("the proxy sends alice's browser to %q", resp.Header.Get("Location"))
	}
	// The attacker, with everything the begin gave them.
	for _, code := range []string{"", begin.ResultToken, strings.Repeat("0", 64)} {
		got, err := c.Admin.ResultOIDC(ctx, wire.SSOResultRequest{ID: begin.ID, ResultToken: begin.ResultToken, Code: code})
		if err == nil {
			t.Fatalf("whoever began the login got alice's certificates (user %q) without her browser's code", got.User)
		}
		if !strings.Contains(err.Error(), "callback code") {
			t.Fatalf("the refusal does not say why: %v", err)
		}
	}
	evs, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.UserLogin})
	if err != nil {
		t.Fatal(err)
	}
	audited := false
	for _, e := range evs {
		audited = audited || !e.Success && e.User == "alice" && e.Error == "result fetched without the callback code" && e.Fields["connector"] == "corp"
	}
	if !audited {
		t.Fatalf("the refused result is not audited: %+v", evs)
	}
	// With the code alice's browser brought, the result is handed over, once.
	got, err := c.Admin.ResultOIDC(ctx, wire.SSOResultRequest{ID: begin.ID, ResultToken: begin.ResultToken, Code: back.Query().Get("code")})
	if err != nil || got.User != "alice" {
		t.Fatalf("with the callback code: %+v %v", got, err)
	}
}

// ssoHijackWeb: the same against the web UI. Someone clicks "Sign in with
// corp" in their own browser (which gets the warden_sso cookie), and sends
// the IdP's link to alice. Her browser comes back to the proxy without the
// cookie and is refused; the one who began, with the cookie and the login
// id but not the code alice's browser got, is refused too, and gets no
// session.
func ssoHijackWeb(t *testing.T, c *Cluster, idp *ssoIdP, tlsCA string) {
	base := "https://" + c.ProxyAddr()
	jar, _ := cookiejar.New(nil)
	attacker := HTTPSClient(tlsCA, jar)
	attacker.CheckRedirect = func(r *http.Request, _ []*http.Request) error {
		if r.URL.Path == "/authorize" {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := attacker.Get(base + "/web/login/sso/corp?next=/web/servers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(authURL, "/authorize?") {
		t.Fatalf("Sign in with corp: %d to %q", resp.StatusCode, authURL)
	}
	victimJar, _ := cookiejar.New(nil)
	victim := HTTPSClient(tlsCA, victimJar)
	victim.CheckRedirect = func(r *http.Request, _ []*http.Request) error {
		if r.URL.Path == "/authorize" {
			idp.mu.Lock()
			idp.challenges[r.URL.Query().Get("code_challenge")] = true
			idp.mu.Unlock()
		}
		return nil
	}
	u, _ := url.Parse(authURL)
	idp.mu.Lock()
	idp.challenges[u.Query().Get("code_challenge")] = true
	idp.mu.Unlock()
	_, code := idpLoginForm(t, victim, authURL)
	q := u.Query()
	resp, err = victim.PostForm(idp.tp.Addr()+"/login", url.Values{"uname": {"alice"}, "psw": {"alice-pw"}, "state": {q.Get("state")},
		"code": {code}, "redirect_uri": {q.Get("redirect_uri")}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	done := resp.Request.URL
	if resp.StatusCode != http.StatusUnauthorized || done.Path != "/web/login/sso/done" || done.Query().Get("code") == "" ||
		!strings.Contains(string(body), "not started in this browser") {
		t.Fatalf("alice's browser, without the cookie, ended at %s with %d: %s", done, resp.StatusCode, body)
	}
	// The attacker learns the login id (it is no secret: it shows in
	// URLs) but not the code.
	resp, err = attacker.Get(base + "/web/login/sso/done?id=" + url.QueryEscape(done.Query().Get("id")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusSeeOther || resp.Request.URL.Path == "/web/servers" {
		t.Fatalf("the browser that began the sign-in got alice's session without her code: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	for _, ck := range jar.Cookies(&url.URL{Scheme: "https", Host: c.ProxyAddr(), Path: "/web/"}) {
		if strings.Contains(ck.Name, "session") {
			t.Fatalf("the browser that began the sign-in got a session cookie %q", ck.Name)
		}
	}
	resp, err = attacker.Get(base + "/web/servers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path == "/web/servers" && resp.StatusCode == http.StatusOK {
		t.Fatal("the browser that began the sign-in is signed in")
	}
}
