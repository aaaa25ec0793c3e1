//go:build integration

package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/testkit"
)

var splitCSRFRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// splitWebUser is a browser session at a proxy's web UI, driven from Go
// over the proxy's real HTTPS port.
type splitWebUser struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
}

func newSplitWebUser(t *testing.T, p *splitProxyProc) *splitWebUser {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return &splitWebUser{t: t, base: "https://" + p.Addr(), hc: hc}
}

func (w *splitWebUser) get(path string) (int, string) {
	w.t.Helper()
	resp, err := w.hc.Get(w.base + path)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (w *splitWebUser) post(path string, form url.Values) (int, string) {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", w.base)
	resp, err := w.hc.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// signin signs u in through the sign-in form; it reports the status and
// page it ended on.
func (w *splitWebUser) signin(u *User, password string) (int, string) {
	w.t.Helper()
	_, page := w.get("/web/login")
	m := splitCSRFRe.FindStringSubmatch(page)
	if m == nil {
		w.t.Fatalf("no CSRF token on the sign-in page: %.300s", page)
	}
	st, page := w.post("/web/login", url.Values{"csrf": {m[1]}, "user": {u.Name}, "password": {password}, "otp": {u.NextOTP(w.t)},
		"next": {"/web/servers"}})
	if m := splitCSRFRe.FindStringSubmatch(page); m != nil && st == http.StatusOK {
		w.csrf = m[1]
	}
	return st, page
}

// splitTerm is a web terminal socket, driven as terminal.js does.
type splitTerm struct {
	t      *testing.T
	ws     *websocket.Conn
	mu     sync.Mutex
	out    bytes.Buffer
	reason string
	closed bool
	// mfa: the server asked for a per-session MFA check; mfaErrors are
	// the answers it refused.
	mfa       bool
	mfaErrors []string
}

func (w *splitWebUser) openTerm(path string) *splitTerm {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(w.base, "https")+path,
		&websocket.DialOptions{HTTPClient: w.hc, HTTPHeader: http.Header{"Origin": {w.base}}})
	if err != nil {
		w.t.Fatalf("dial %s: %v", path, err)
	}
	ws.SetReadLimit(1 << 20)
	w.t.Cleanup(func() { ws.CloseNow() })
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"cols":120,"rows":40}`)); err != nil {
		w.t.Fatal(err)
	}
	tc := &splitTerm{t: w.t, ws: ws}
	go func() {
		for {
			typ, b, err := ws.Read(context.Background())
			tc.mu.Lock()
			if err != nil {
				tc.closed = true
				tc.mu.Unlock()
				return
			}
			if typ == websocket.MessageBinary {
				tc.out.Write(b)
				n := int64(tc.out.Len())
				tc.mu.Unlock()
				ack, _ := json.Marshal(map[string]int64{"ack": n})
				_ = ws.Write(context.Background(), websocket.MessageText, ack)
				continue
			}
			var m struct {
				Reason   string          `json:"reason"`
				MFA      json.RawMessage `json:"mfa"`
				MFAError string          `json:"mfa_error"`
			}
			_ = json.Unmarshal(b, &m)
			if m.Reason != "" {
				tc.reason = m.Reason
			}
			if len(m.MFA) > 0 {
				tc.mfa = true
			}
			if m.MFAError != "" {
				tc.mfaErrors = append(tc.mfaErrors, m.MFAError)
			}
			tc.mu.Unlock()
		}
	}()
	return tc
}

func (tc *splitTerm) state() (string, string, bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.out.String(), tc.reason, tc.closed
}

func (tc *splitTerm) send(s string) {
	tc.t.Helper()
	if err := tc.ws.Write(context.Background(), websocket.MessageBinary, []byte(s)); err != nil {
		tc.t.Fatal(err)
	}
}

func (tc *splitTerm) waitOutput(s string) {
	tc.t.Helper()
	testkit.WaitFor(tc.t, "terminal output "+s, func() bool {
		out, _, closed := tc.state()
		return strings.Contains(out, s) || closed
	})
	if out, reason, _ := tc.state(); !strings.Contains(out, s) {
		tc.t.Fatalf("the terminal closed without %q: %q (reason %q)", s, out, reason)
	}
}

// TestSplitProxyWebUI: the web UI served by a proxy running apart from
// auth (two auth instances and two proxies, each a process on a host of
// its own, on one PostgreSQL database, with peering). A user signs in at
// proxy B with password and TOTP (a wrong password is refused), lists
// the servers, and opens a web terminal to node-a, whose tunnel ends at
// proxy A: the shell runs through B → A → node-a. Every decision is
// auth's: a lock through auth A ends the web terminal and the browser
// session (the next page asks to sign in again); an admin joins the
// terminal's session as an observer from proxy B; an admin's pages (users,
// cluster health, audit log, live sessions, locks, requests, recordings,
// the player, the download and the search in a recording)
// work through proxy B, and a user who
// is not an admin is refused them by auth; sign-out ends the session.
func TestSplitProxyWebUI(t *testing.T) {
	EnsureOSUser(t, osLogin)
	s := newSplitCluster(t)
	authA := s.StartAuth("auth-a")
	authB := s.StartAuth("auth-b")
	proxyA := s.StartPeeringProxy("proxy-a", authA, authA, authB)
	proxyB := s.StartPeeringProxy("proxy-b", authB, authB, authA)
	s.StartNode("node-a", authA, proxyA)
	u := s.AddUser(authA, "webpeer", []string{"access"}, []string{osLogin})
	admin := s.AddUser(authB, "webadmin", []string{"admin"}, []string{osLogin})

	w := newSplitWebUser(t, proxyB)
	if st, page := w.signin(u, "wrong password"); st != http.StatusUnauthorized || !strings.Contains(page, "Wrong user name, password or code") {
		t.Fatalf("a wrong password at proxy B's sign-in: status %d: %.300s", st, page)
	}
	if st, page := w.signin(u, u.Password); st != http.StatusOK || w.csrf == "" {
		t.Fatalf("sign in at proxy B: status %d: %.500s", st, page)
	}
	// Proxy B lists the node whose tunnel ends at proxy A.
	testkit.WaitFor(t, "node-a on proxy B's servers page", func() bool {
		st, page := w.get("/web/servers")
		return st == http.StatusOK && strings.Contains(page, "node-a")
	})
	// Auth audited the sign-in as the web's, from the browser's address.
	testkit.WaitFor(t, "the web sign-in in the audit log", func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.UserLogin, User: "webpeer", Limit: 20})
		for _, ev := range evs {
			if err == nil && ev.Success && ev.Fields["via"] == "web" && ev.RemoteAddr == s.lab.Gateway() {
				return true
			}
		}
		return false
	})
	if st, page := w.get("/web/me"); st != http.StatusOK || !strings.Contains(page, osLogin) {
		t.Fatalf("the me page at proxy B: status %d: %.500s", st, page)
	}
	// A page only an admin sees is refused by auth.
	if st, _ := w.get("/web/admin/users"); st != http.StatusForbidden {
		t.Fatalf("the users page for a user who is not an admin: status %d, want 403", st)
	}

	tc := w.openTerm("/web/servers/node-a/ws?login=" + osLogin)
	tc.send("echo split-$((6*7))\n")
	tc.waitOutput("split-42")

	// The admin, signed in at proxy B too, sees the session and the
	// audit log, and locks the user through auth A.
	aw := newSplitWebUser(t, proxyB)
	if st, page := aw.signin(admin, admin.Password); st != http.StatusOK {
		t.Fatalf("admin sign in at proxy B: status %d: %.500s", st, page)
	}
	testkit.WaitFor(t, "the web terminal's session on proxy B's live sessions page", func() bool {
		st, page := aw.get("/web/sessions")
		return st == http.StatusOK && strings.Contains(page, "webpeer")
	})
	// The admin joins the web terminal's session as an observer, from
	// proxy B's live sessions (through B → A → node-a), and sees what the
	// user types.
	var sid string
	testkit.WaitFor(t, "the web terminal's live session at auth", func() bool {
		list, err := authA.admin.ListSessions(context.Background())
		for _, ls := range list {
			if err == nil && ls.User == "webpeer" {
				sid = ls.ID
			}
		}
		return sid != ""
	})
	if st, page := aw.get("/web/sessions/" + sid + "/join?mode=observer"); st != http.StatusOK {
		t.Fatalf("the join page at proxy B: status %d: %.500s", st, page)
	}
	obs := aw.openTerm("/web/sessions/" + sid + "/ws?mode=observer")
	obs.waitOutput("joined webpeer's session")
	tc.send("echo observed-$((7*6))\n")
	obs.waitOutput("observed-42")

	for p, want := range map[string]string{"/web/admin/users": "webpeer", "/web/admin/health": "node-a", "/web/admin/locks": "Locks",
		"/web/requests": "Access requests", "/web/recordings": "Recordings"} {
		if st, page := aw.get(p); st != http.StatusOK || !strings.Contains(page, want) {
			t.Fatalf("%s for the admin at proxy B: status %d, want 200 with %q: %.500s", p, st, want, page)
		}
	}
	testkit.WaitFor(t, "the user's events on proxy B's audit page", func() bool {
		st, page := aw.get("/web/audit")
		return st == http.StatusOK && strings.Contains(page, "webpeer")
	})

	start := time.Now()
	lockID(t, s.adminCLI(authA, "lock", "--user", "webpeer", "--message", "web-locked-through-auth-a"))
	testkit.WaitFor(t, "the web terminal to end by the lock", func() bool {
		_, _, closed := tc.state()
		return closed
	})
	out, reason, _ := tc.state()
	t.Logf("a lock through auth A ended the web terminal at proxy B (B → A → node-a) %s after the lock command started; reason %q",
		time.Since(start).Round(time.Millisecond), reason)
	if !strings.Contains(out+reason, "web-locked-through-auth-a") {
		t.Fatalf("the terminal ended without the lock's message: output %q, reason %q", out, reason)
	}
	if st, page := w.get("/web/servers"); st != http.StatusUnauthorized || !strings.Contains(page, "web-locked-through-auth-a") {
		t.Fatalf("the servers page of the locked user: status %d: %.500s", st, page)
	}

	// The web terminal's recording is listed through proxy B.
	testkit.WaitFor(t, "the web terminal's recording on proxy B's recordings page", func() bool {
		st, page := aw.get("/web/recordings")
		return st == http.StatusOK && strings.Contains(page, "node-a")
	})

	// The player reads it through proxy B, a range at a time from auth.
	if st, page := aw.get("/web/recordings/" + sid + "/play"); st != http.StatusOK {
		t.Fatalf("the player page at proxy B: status %d: %.500s", st, page)
	}
	testkit.WaitFor(t, "the recording's bytes through proxy B's player", func() bool {
		st, cast := aw.get("/web/recordings/" + sid + "/cast")
		return st == http.StatusOK && strings.Contains(cast, "observed-42")
	})
	if st, ix := aw.get("/web/recordings/" + sid + "/index"); st != http.StatusOK || !strings.HasPrefix(ix, "{") && !strings.HasPrefix(ix, "[") {
		t.Fatalf("the recording's index at proxy B: status %d: %.300s", st, ix)
	}
	// The download and the search in it stream it from auth, checked.
	if st, cast := aw.get("/web/recordings/" + sid); st != http.StatusOK || !strings.Contains(cast, "observed-42") {
		t.Fatalf("the recording's download at proxy B: status %d: %.300s", st, cast)
	}
	if st, hits := aw.get("/web/recordings/" + sid + "/search?q=" + url.QueryEscape("echo observed")); st != http.StatusOK || !strings.Contains(hits, `"t":`) {
		t.Fatalf("the search in the recording at proxy B: status %d: %.300s", st, hits)
	}

	// With auth out of reach nothing is decided: a page fails (503) but
	// the session does not end; with auth back, it goes on.
	authA.proc.stop()
	authB.proc.stop()
	if st, page := aw.get("/web/servers"); st != http.StatusServiceUnavailable || !strings.Contains(page, "auth is not reachable") {
		t.Fatalf("the servers page with auth out of reach: status %d: %.500s", st, page)
	}
	authB.proc = authB.host.Start(t, WardenBinary, "start", "-c", filepath.Join(s.dir, "auth-b.yaml"), "--data-dir", authB.dataDir)
	testkit.WaitFor(t, "the admin's session at proxy B once auth B is back", func() bool {
		st, page := aw.get("/web/admin/users")
		return st == http.StatusOK && strings.Contains(page, "webpeer")
	})

	// Sign-out ends the admin's session at every proxy.
	if st, _ := aw.post("/web/logout", url.Values{"csrf": {aw.csrf}}); st != http.StatusOK {
		t.Fatalf("sign out: status %d", st)
	}
	if st, page := aw.get("/web/servers"); st != http.StatusOK || !strings.Contains(page, `id="signin"`) {
		t.Fatalf("after sign-out, the servers page: status %d: %.300s", st, page)
	}
}

// TestSplitProxyWebSessionMFA: a role that requires a per-session MFA
// check, and the web terminal of a proxy running apart: the terminal asks
// for a code, auth refuses a wrong one (the answer goes to auth as the
// signed-in user: IssueSessionCert), and with the next code from the
// user's authenticator the shell runs, as the per-session certificate
// auth issued (the proxy counts its use with auth).
func TestSplitProxyWebSessionMFA(t *testing.T) {
	s, authA, proxyA := newSplitWithNodeA(t)
	s.apply(authA, "apply roles", sessionMFARole)
	u := s.AddUser(authA, "webmfa", []string{"prod"}, []string{osLogin})
	w := newSplitWebUser(t, proxyA)
	if st, page := w.signin(u, u.Password); st != http.StatusOK {
		t.Fatalf("sign in: status %d: %.500s", st, page)
	}
	testkit.WaitFor(t, "node-a on the servers page", func() bool {
		st, page := w.get("/web/servers")
		return st == http.StatusOK && strings.Contains(page, "node-a")
	})
	tc := w.openTerm("/web/servers/node-a/ws?login=" + osLogin)
	testkit.WaitFor(t, "the MFA prompt", func() bool { tc.mu.Lock(); defer tc.mu.Unlock(); return tc.mfa || tc.closed })
	if _, reason, closed := tc.state(); closed {
		t.Fatalf("the terminal closed instead of asking for a code: %q", reason)
	}
	if err := tc.ws.Write(context.Background(), websocket.MessageText, []byte(`{"otp":"000000"}`)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the wrong code's refusal", func() bool { tc.mu.Lock(); defer tc.mu.Unlock(); return len(tc.mfaErrors) > 0 || tc.closed })
	if out, _, _ := tc.state(); strings.Contains(out, "$") {
		t.Fatalf("a shell after a wrong code: %q", out)
	}
	code, _ := json.Marshal(map[string]string{"otp": u.NextOTP(t)})
	if err := tc.ws.Write(context.Background(), websocket.MessageText, code); err != nil {
		t.Fatal(err)
	}
	tc.waitOutput("$")
	tc.send("echo mfa-split-$((6*7))\n")
	tc.waitOutput("mfa-split-42")
	testkit.WaitFor(t, "the per-session certificate in the audit log", func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.CertIssued, User: "webmfa", Limit: 50})
		for _, ev := range evs {
			if err == nil && ev.Fields["cert_type"] == "session_mfa" {
				return true
			}
		}
		return false
	})
}

var splitSecretRe = regexp.MustCompile(`id="totp-secret" class="secret">([A-Z2-7]+)<`)

// TestSplitProxyWebInvite: the invite sign-up at the web UI of a proxy
// running apart (auth's BeginSignup and CompleteSignup, called by the
// proxy for the browser's address): the page shows a new TOTP secret, a
// wrong code is refused, the right one signs the user up, and the user
// then signs in at the proxy.
func TestSplitProxyWebInvite(t *testing.T) {
	s := newSplitCluster(t)
	authA := s.StartAuth("auth-a")
	proxyA := s.StartProxy("proxy-a", authA, authA)
	inv, err := authA.admin.CreateUser(context.Background(), auth.CreateUserRequest{Name: "webinvite", Roles: []string{"access"}, Logins: []string{osLogin}})
	if err != nil {
		t.Fatal(err)
	}
	w := newSplitWebUser(t, proxyA)
	path := "/web/invite/" + url.PathEscape(inv.Token)
	var page string
	testkit.WaitFor(t, "the invite page at the proxy", func() bool {
		var st int
		st, page = w.get(path)
		return st == http.StatusOK
	})
	sec, csrf := splitSecretRe.FindStringSubmatch(page), splitCSRFRe.FindStringSubmatch(page)
	if sec == nil || csrf == nil {
		t.Fatalf("no TOTP secret or CSRF token on the invite page: %.500s", page)
	}
	u := &User{Name: "webinvite", Password: "correct horse battery webinvite", TOTPSecret: sec[1]}
	form := url.Values{"csrf": {csrf[1]}, "password": {u.Password}, "password2": {u.Password}, "otp": {"000000"}}
	if st, _ := w.post(path, form); st != http.StatusUnauthorized && st != http.StatusBadRequest {
		t.Fatalf("a wrong code at sign-up: status %d, want a refusal", st)
	}
	form.Set("otp", u.NextOTP(t))
	if st, page := w.post(path, form); st != http.StatusOK || !strings.Contains(page, "You are signed up") {
		t.Fatalf("sign-up at the proxy: status %d: %.500s", st, page)
	}
	if st, page := w.signin(u, u.Password); st != http.StatusOK || w.csrf == "" {
		t.Fatalf("sign in after the sign-up: status %d: %.500s", st, page)
	}
}
