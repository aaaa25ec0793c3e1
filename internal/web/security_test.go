package web_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/lock"
)

// webClient is a plain HTTP client with a cookie jar: the checks here are
// about what the server accepts, whatever the browser would do.
type webClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newWebClient(t *testing.T, c *clustertest.Cluster) *webClient {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Proc.Auth().Authority().CertPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(hc.CloseIdleConnections)
	return &webClient{t: t, base: "https://" + c.ProxyAddr(), hc: hc}
}

func (w *webClient) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	w.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, w.base+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", page)
	}
	return m[1]
}

func (w *webClient) signin(u *clustertest.User) string {
	w.t.Helper()
	_, page := w.do("GET", "/web/login", nil, nil)
	resp, _ := w.do("POST", "/web/login", url.Values{"csrf": {csrfOf(w.t, page)}, "user": {u.Name},
		"password": {u.Password}, "otp": {u.NextOTP(w.t)}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		w.t.Fatalf("sign in: status %d", resp.StatusCode)
	}
	_, page = w.do("GET", "/web/requests", nil, nil)
	return csrfOf(w.t, page)
}

func (w *webClient) cookie(name string) *http.Cookie {
	u, _ := url.Parse(w.base)
	for _, c := range w.hc.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestSessionSecurity checks what the browser relies on: the cookie's
// attributes, the security headers, CSRF tokens on state changes, refusal
// of cross-origin posts, sign-out ending the session on the server, and a
// lock ending a signed-in session at its next request.
func TestSessionSecurity(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NoNode: true})
	c.ApplyRoles(roles)
	alice := c.AddUser("alice", []string{"dev"}, []string{"alice"})
	w := newWebClient(t, c)

	// Headers on every page.
	resp, _ := w.do("GET", "/web/login", nil, nil)
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	} {
		if got := resp.Header.Get(k); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") ||
		strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP %q", csp)
	}

	// A sign-in form posted without the token of its cookie is refused.
	resp, _ = w.do("POST", "/web/login", url.Values{"csrf": {"forged"}, "user": {"alice"}, "password": {alice.Password}, "otp": {"000000"}}, nil)
	if resp.StatusCode != http.StatusForbidden || w.cookie("__Host-warden_session") != nil {
		t.Fatalf("login with a forged CSRF token: status %d", resp.StatusCode)
	}

	csrf := w.signin(alice)
	sc := w.cookie("__Host-warden_session")
	if sc == nil {
		t.Fatal("no session cookie")
	}
	// Audited as any login, marked as a browser's.
	evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.UserLogin, User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || !evs[len(evs)-1].Success || evs[len(evs)-1].Fields["via"] != "web" {
		t.Fatalf("user.login events of the web sign-in: %+v", evs)
	}
	// The jar does not keep attributes: read them from a fresh sign-in.
	w2 := newWebClient(t, c)
	_, page := w2.do("GET", "/web/login", nil, nil)
	resp, _ = w2.do("POST", "/web/login", url.Values{"csrf": {csrfOf(t, page)}, "user": {"alice"}, "password": {alice.Password}, "otp": {alice.NextOTP(t)}}, nil)
	var setCookie string
	for _, v := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, "__Host-warden_session=") {
			setCookie = v
		}
	}
	for _, attr := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=Strict", "Expires="} {
		if !strings.Contains(setCookie, attr) {
			t.Errorf("session cookie %q lacks %s", setCookie, attr)
		}
	}
	if strings.Contains(setCookie, "Domain=") {
		t.Errorf("session cookie %q has a Domain", setCookie)
	}

	create := url.Values{"roles": {"prod-admin"}, "reason": {"deploy"}}
	count := func() int {
		reqs, err := c.Admin.ListAccessRequests(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(reqs)
	}
	// A state change without the session's CSRF token, or with another's.
	resp, _ = w.do("POST", "/web/requests", create, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST without CSRF token: status %d, want 403", resp.StatusCode)
	}
	other := url.Values{"csrf": {csrfOf(t, mustGet(w2, "/web/requests"))}}
	for k, v := range create {
		other[k] = v
	}
	if resp, _ = w.do("POST", "/web/requests", other, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST with another session's CSRF token: status %d, want 403", resp.StatusCode)
	}
	// A cross-site post is refused even with the right token.
	good := url.Values{"csrf": {csrf}}
	for k, v := range create {
		good[k] = v
	}
	if resp, _ = w.do("POST", "/web/requests", good, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: status %d, want 403", resp.StatusCode)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d requests created by refused posts", n)
	}
	if resp, _ = w.do("POST", "/web/requests", good, map[string]string{"Sec-Fetch-Site": "same-origin"}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST with the token: status %d", resp.StatusCode)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d requests after one good post", n)
	}

	// The passkey endpoints the page's script posts to want the token too.
	for _, path := range []string{"/web/security/passkeys/begin", "/web/security/passkeys/finish", "/web/security/mfa/begin",
		"/web/security/recovery-codes", "/web/security/devices/otp/delete"} {
		if resp, _ = w.do("POST", path, url.Values{"name": {"laptop"}}, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without CSRF token: status %d, want 403", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/web/login/passkey/begin", "/web/login/passkey/finish", "/web/login/passkey/enrol/begin", "/web/login/passkey/enrol/finish", "/web/mfa/begin", "/web/mfa/finish"} {
		if resp, _ = w.do("POST", path, url.Values{"csrf": {"forged"}}, nil); resp.StatusCode == http.StatusOK {
			t.Errorf("POST %s with a forged CSRF token: status %d", path, resp.StatusCode)
		}
	}

	// Signing out ends the session on the server: the old cookie value
	// no longer works even if replayed.
	if resp, _ = w.do("POST", "/web/logout", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: status %d", resp.StatusCode)
	}
	replay := newWebClient(t, c)
	replay.hc.Jar.SetCookies(mustURL(replay.base), []*http.Cookie{{Name: sc.Name, Value: sc.Value, Path: "/"}})
	if resp, _ = replay.do("GET", "/web/me", nil, nil); resp.StatusCode != http.StatusSeeOther ||
		!strings.HasPrefix(resp.Header.Get("Location"), "/web/login?next=") {
		t.Fatalf("replayed cookie after logout: status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// A lock on the user ends the other session at its next request, with
	// the lock's message.
	if _, err := c.Admin.CreateLock(context.Background(), auth.CreateLockRequest{Target: lock.Target{User: "alice"},
		Message: "incident 42", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	resp, page = w2.do("GET", "/web/me", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "incident 42") {
		t.Fatalf("locked user's page: status %d\n%s", resp.StatusCode, page)
	}
	if resp, _ = w2.do("GET", "/web/me", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("locked user's session still exists: status %d", resp.StatusCode)
	}
}

func mustGet(w *webClient, path string) string {
	w.t.Helper()
	resp, page := w.do("GET", path, nil, nil)
	if resp.StatusCode != http.StatusOK {
		w.t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	return page
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
