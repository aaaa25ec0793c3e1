//go:build integration

package web_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"

	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

// webUser is a signed-in browser session driven from Go over the real
// HTTPS port, from a chosen local address.
type webUser struct {
	t    testing.TB
	base string
	hc   *http.Client
	csrf string
}

// webSignin signs u in through the sign-in form, connecting from local (a
// loopback address such as 127.0.0.2; "" for any).
func webSignin(t testing.TB, c *clustertest.Cluster, u *clustertest.User, local string) *webUser {
	t.Helper()
	d := &net.Dialer{}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Transport: &http.Transport{DialContext: d.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	w := &webUser{t: t, base: "https://" + c.ProxyAddr(), hc: hc}
	page := w.get("/web/login")
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the sign-in page")
	}
	w.post("/web/login", url.Values{"csrf": {m[1]}, "user": {u.Name}, "password": {u.Password}, "otp": {u.NextOTP(t)}})
	m = csrfRe.FindStringSubmatch(w.get("/web/servers"))
	if m == nil {
		t.Fatal("not signed in")
	}
	w.csrf = m[1]
	return w
}

func (w *webUser) get(path string) string {
	w.t.Helper()
	resp, err := w.hc.Get(w.base + path)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (w *webUser) post(path string, form url.Values) {
	w.t.Helper()
	req, _ := http.NewRequest("POST", w.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", w.base)
	resp, err := w.hc.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		w.t.Fatalf("POST %s: status %d", path, resp.StatusCode)
	}
}

// termConn is a web terminal socket as terminal.js drives it.
type termConn struct {
	t  testing.TB
	ws *websocket.Conn
	mu sync.Mutex
	// out is all the output received on this socket; received counts the
	// output of the terminal (this socket's start offset included).
	out      bytes.Buffer
	received int64
	token    string
	reason   string
	closed   bool
	// mfa: the server asked for a per-session MFA check; mfaErrors are
	// the answers it refused.
	mfa       bool
	mfaErrors []string
}

// openTerm opens a web terminal socket (path: /web/servers/NODE/ws?login=)
// and sends the first message: a new terminal, or resume with token from
// offset.
func (w *webUser) openTerm(path, token string, offset int64) *termConn {
	w.t.Helper()
	u := "wss" + strings.TrimPrefix(w.base, "https") + path
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: w.hc,
		HTTPHeader: http.Header{"Origin": {w.base}}})
	if err != nil {
		w.t.Fatalf("dial %s: %v", path, err)
	}
	ws.SetReadLimit(1 << 20)
	tc := &termConn{t: w.t, ws: ws, received: offset}
	hello := map[string]any{"cols": 120, "rows": 40}
	if token != "" {
		hello["resume"], hello["offset"] = token, offset
	}
	b, _ := json.Marshal(hello)
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatal(err)
	}
	go tc.read()
	w.t.Cleanup(func() { ws.CloseNow() })
	return tc
}

func (tc *termConn) read() {
	ctx := context.Background()
	for {
		typ, b, err := tc.ws.Read(ctx)
		tc.mu.Lock()
		if err != nil {
			tc.closed = true
			tc.mu.Unlock()
			return
		}
		if typ == websocket.MessageBinary {
			tc.out.Write(b)
			tc.received += int64(len(b))
			n := tc.received
			tc.mu.Unlock()
			ack, _ := json.Marshal(map[string]int64{"ack": n})
			_ = tc.ws.Write(ctx, websocket.MessageText, ack)
			continue
		}
		var m struct {
			Token    string          `json:"token"`
			Reason   string          `json:"reason"`
			MFA      json.RawMessage `json:"mfa"`
			MFAError string          `json:"mfa_error"`
		}
		_ = json.Unmarshal(b, &m)
		if len(m.MFA) > 0 {
			tc.mfa = true
		}
		if m.MFAError != "" {
			tc.mfaErrors = append(tc.mfaErrors, m.MFAError)
		}
		if m.Token != "" {
			tc.token = m.Token
		}
		if m.Reason != "" {
			tc.reason = m.Reason
		}
		tc.mu.Unlock()
	}
}

func (tc *termConn) state() (out string, received int64, token, reason string, closed bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.out.String(), tc.received, tc.token, tc.reason, tc.closed
}

func (tc *termConn) waitOutput(s string) {
	tc.t.Helper()
	testkit.WaitFor(tc.t, "terminal output "+s, func() bool {
		out, _, _, _, _ := tc.state()
		return strings.Contains(out, s)
	}, "%s", func() string { out, _, _, r, _ := tc.state(); return out + " / " + r }())
}

func (tc *termConn) waitToken() string {
	tc.t.Helper()
	testkit.WaitFor(tc.t, "resume token", func() bool { _, _, tok, r, closed := tc.state(); return tok != "" || r != "" || closed })
	_, _, tok, r, _ := tc.state()
	if tok == "" {
		tc.t.Fatalf("no resume token; reason %q", r)
	}
	return tok
}

// refused waits for the socket to be refused and returns the reason.
func (tc *termConn) refused() string {
	tc.t.Helper()
	testkit.WaitFor(tc.t, "refusal", func() bool { _, _, _, _, closed := tc.state(); return closed })
	_, _, tok, r, _ := tc.state()
	if tok != "" {
		tc.t.Fatalf("resume accepted (token issued), reason %q", r)
	}
	return r
}

func (tc *termConn) send(s string) {
	tc.t.Helper()
	if err := tc.ws.Write(context.Background(), websocket.MessageBinary, []byte(s)); err != nil {
		tc.t.Fatal(err)
	}
}

// sendJSON sends a text message (an MFA answer, a size).
func (tc *termConn) sendJSON(v any) {
	tc.t.Helper()
	b, _ := json.Marshal(v)
	if err := tc.ws.Write(context.Background(), websocket.MessageText, b); err != nil {
		tc.t.Fatal(err)
	}
}

// cut drops the socket without a closing handshake, as a network blip
// does.
func (tc *termConn) cut() { tc.ws.CloseNow() }

// TestTerminalResume: a web terminal whose socket is cut keeps its shell;
// the page resumes with its token and gets the output produced while it
// was away. The token is refused to another browser session of the same
// user, and once used it is replaced. The node and the audit log see the
// browser's address as the client's.
func TestTerminalResume(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	carol := c.AddUser("carol", []string{"dev"}, []string{"carol"})
	clustertest.EnsureOSUser(t, "carol")
	a := webSignin(t, c, carol, "127.0.0.2")
	b := webSignin(t, c, carol, "")
	const path = "/web/servers/node1/ws?login=carol"

	tc := a.openTerm(path, "", 0)
	tok := tc.waitToken()
	tc.send("V=resumed-$((6*7))\n")
	tc.send("echo set-$V\n")
	tc.waitOutput("set-resumed-42")

	// The browser's address, not the web server's, is the client's.
	var start audit.Event
	testkit.WaitFor(t, "session.start", func() bool {
		evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.SessionStart, User: "carol"})
		if err != nil || len(evs) == 0 {
			return false
		}
		start = evs[len(evs)-1]
		return true
	})
	if !strings.HasPrefix(start.RemoteAddr, "127.0.0.2:") {
		t.Errorf("session.start remote_addr %q, want the browser's 127.0.0.2", start.RemoteAddr)
	}
	// The live record is written apart from session.start: wait for it.
	var live []wire.LiveSession
	testkit.WaitFor(t, "the live session", func() bool {
		var err error
		live, err = c.Admin.ListSessions(context.Background())
		return err == nil && len(live) > 0
	})
	if len(live) != 1 || !strings.HasPrefix(live[0].RemoteAddr, "127.0.0.2:") {
		t.Errorf("live sessions %+v, want one from 127.0.0.2", live)
	}

	// Output while the page is away: the shell waits for a file, then
	// prints and leaves a mark.
	dir, err := os.MkdirTemp("", "warden-resume-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777) // the shell runs as carol
	goFile, doneFile := filepath.Join(dir, "go"), filepath.Join(dir, "done")
	tc.send("while [ ! -e " + goFile + " ]; do sleep 0.05; done; echo during-$V; touch " + doneFile + "\n")
	tc.waitOutput("done\r\n") // the command's echo
	tc.cut()
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the shell's output while away", func() bool { _, err := os.Stat(doneFile); return err == nil })
	_, offset, _, _, _ := tc.state()

	// Another browser session of the same user cannot take it.
	if r := b.openTerm(path, tok, offset).refused(); !strings.Contains(r, "another browser session") {
		t.Errorf("resume from another session: reason %q", r)
	}
	// A made-up token names nothing.
	if r := a.openTerm(path, "bogus-token", offset).refused(); !strings.Contains(r, "gone") {
		t.Errorf("resume with a bogus token: reason %q", r)
	}

	tc2 := a.openTerm(path, tok, offset)
	tok2 := tc2.waitToken()
	if tok2 == tok {
		t.Error("the resume token was not replaced")
	}
	tc2.waitOutput("during-resumed-42")
	// A prompt of its own marks the end of the output: the offset read
	// after it is all there will be (a later prompt, acknowledged, would
	// make it too old to resume from).
	tc2.send("PS1='p-$V> '; echo again-$V\n")
	tc2.waitOutput("again-resumed-42\r\np-resumed-42> ")

	// The first token is spent.
	_, off2, _, _, _ := tc2.state()
	if r := a.openTerm(path, tok, off2).refused(); !strings.Contains(r, "gone") {
		t.Errorf("resume with a spent token: reason %q", r)
	}
	// One holder: resuming with the current token closes the other socket.
	tc3 := a.openTerm(path, tok2, off2)
	tc3.waitToken()
	testkit.WaitFor(t, "the previous socket closed", func() bool { _, _, _, _, closed := tc2.state(); return closed })
	tc3.send("echo third-$V\n")
	tc3.waitOutput("third-resumed-42")

	// Still one session on the node, and the same one.
	live, err = c.Admin.ListSessions(context.Background())
	if err != nil || len(live) != 1 || live[0].ID != start.SessionID {
		t.Errorf("live sessions %+v (%v), want only %s", live, err, start.SessionID)
	}

	// Every resume is audited: the two that worked, with the node, the
	// login, the browser's address and the time away; the three refused,
	// with the reason.
	resumes, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.WebTerminalResume, User: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	var ok, refused int
	for _, ev := range resumes {
		switch {
		case ev.Success && ev.Node == "node1" && ev.Login == "carol" && strings.HasPrefix(ev.RemoteAddr, "127.0.0.2") && ev.Fields["session"] != "":
			ok++
		case !ev.Success && ev.Error != "":
			refused++
		default:
			t.Errorf("web.terminal_resume %+v", ev)
		}
	}
	if ok != 2 || refused != 3 {
		t.Errorf("web.terminal_resume: %d resumed, %d refused; want 2 and 3: %+v", ok, refused, resumes)
	}
	for _, ev := range resumes {
		if !ev.Success {
			continue
		}
		if _, set := ev.Fields["away_ms"]; !set {
			t.Errorf("the first resume does not say how long the page was away: %+v", ev)
		}
		break
	}
}

// TestTerminalResumeGrace: proxy.web_terminal_resume_grace sets how long a
// terminal waits for its page: with 1s, a terminal whose socket is cut
// ends (its session ends on the node) and can no longer be resumed; the
// page is told the window (data-grace).
func TestTerminalResumeGrace(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"},
		Proxy: service.ProxyConfig{WebTerminalResumeGrace: time.Second}})
	c.ApplyRoles(roles)
	carol := c.AddUser("carol", []string{"dev"}, []string{"carol"})
	clustertest.EnsureOSUser(t, "carol")
	a := webSignin(t, c, carol, "")
	if page := a.get("/web/servers/node1/terminal?login=carol"); !strings.Contains(page, `data-grace="1000"`) {
		t.Fatalf("the terminal page does not carry the grace window: %s", page)
	}
	const path = "/web/servers/node1/ws?login=carol"
	tc := a.openTerm(path, "", 0)
	tok := tc.waitToken()
	tc.send("echo up-$((6*7))\n")
	tc.waitOutput("up-42")
	tc.cut()
	testkit.WaitFor(t, "the session to end after the grace window", func() bool {
		evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.SessionEnd, User: "carol"})
		return err == nil && len(evs) == 1
	})
	_, off, _, _, _ := tc.state()
	if r := a.openTerm(path, tok, off).refused(); !strings.Contains(r, "gone") {
		t.Fatalf("resume after the grace window: %q", r)
	}
}

// TestTerminalResumeRefused: the current state is checked on resume: a
// lock, or a sign-out, in between refuses it with the reason.
func TestTerminalResumeRefused(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	carol := c.AddUser("carol", []string{"dev"}, []string{"carol"})
	dave := c.AddUser("dave", []string{"dev"}, []string{"dave"})
	clustertest.EnsureOSUser(t, "carol")
	clustertest.EnsureOSUser(t, "dave")

	t.Run("signout", func(t *testing.T) {
		w := webSignin(t, c, dave, "")
		tc := w.openTerm("/web/servers/node1/ws?login=dave", "", 0)
		tok := tc.waitToken()
		tc.send("echo hi-$((6*7))\n")
		tc.waitOutput("hi-42")
		tc.cut()
		_, off, _, _, _ := tc.state()
		// A second terminal, still open, ends at the sign-out.
		open := w.openTerm("/web/servers/node1/ws?login=dave", "", 0)
		open.waitToken()
		w.post("/web/logout", url.Values{"csrf": {w.csrf}})
		testkit.WaitFor(t, "the open terminal to end", func() bool { _, _, _, _, closed := open.state(); return closed })
		if _, _, _, r, _ := open.state(); !strings.Contains(r, "signed out") {
			t.Errorf("open terminal at sign-out: reason %q", r)
		}
		if r := w.openTerm("/web/servers/node1/ws?login=dave", tok, off).refused(); !strings.Contains(r, "signed out") {
			t.Errorf("resume after sign-out: reason %q", r)
		}
		testkit.WaitFor(t, "dave's session ended", func() bool {
			live, err := c.Admin.ListSessions(context.Background())
			return err == nil && !hasUser(live, "dave")
		})
	})

	t.Run("lock", func(t *testing.T) {
		w := webSignin(t, c, carol, "")
		tc := w.openTerm("/web/servers/node1/ws?login=carol", "", 0)
		tok := tc.waitToken()
		tc.send("echo hi-$((6*7))\n")
		tc.waitOutput("hi-42")
		tc.cut()
		_, off, _, _, _ := tc.state()
		if _, err := c.Admin.CreateLock(context.Background(), auth.CreateLockRequest{Target: lock.Target{User: "carol"},
			Message: "incident 4712: away", TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if r := w.openTerm("/web/servers/node1/ws?login=carol", tok, off).refused(); !strings.Contains(r, "incident 4712: away") {
			t.Errorf("resume after a lock: reason %q", r)
		}
	})
}

func hasUser(live []auth.LiveSession, user string) bool {
	for _, s := range live {
		if s.User == user {
			return true
		}
	}
	return false
}
