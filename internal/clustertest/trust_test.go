//go:build integration

package clustertest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/nodeagent"
)

// TestSignupLogsIn: the README's tour, signup then work, needs no second
// login; and a login right after a signup, with the code the signup spent,
// is told so plainly.
func TestSignupLogsIn(t *testing.T) {
	t.Parallel()
	c := New(t, Options{NoNode: true})
	res := c.Warden(t.TempDir(), nil, "users", "add", "developer", "--roles", "access", "--logins", "dev")
	if res.Code != 0 {
		t.Fatalf("users add: %s", res)
	}
	token, args := parseInvite(t, res.Stdout)
	// The signup uses the code of the next time step, so that it is still
	// accepted (and so refused as spent, not as wrong) when the login
	// below tries it again, however slow the machine.
	spent := identity.TOTPStep(time.Now()) + 1
	u := &User{Name: "developer", Password: "a long enough password for developer", next: spent}
	home := t.TempDir()
	signupAs(t, append(args, "--password-stdin"), token+"\n", u, home)

	st := c.Warden(home, nil, "status")
	if st.Code != 0 || !strings.Contains(st.Stdout, "developer") || !strings.Contains(st.Stdout, "valid for") {
		t.Fatalf("status after signup: %s", st)
	}
	if ls := c.Warden(home, nil, "ls", "-o", "json"); ls.Code != 0 {
		t.Fatalf("ls with the signup's certificates: %s", ls)
	}

	code, err := identity.TOTPCode(u.TOTPSecret, time.Unix(spent*30, 0))
	if err != nil {
		t.Fatal(err)
	}
	login := c.Warden(t.TempDir(), strings.NewReader(u.Password+"\n"),
		"login", "--proxy", c.ProxyAddr(), "--user", u.Name, "--password-stdin", "--otp", code)
	if login.Code == 0 || !strings.Contains(login.Stderr, "this TOTP code was already used; wait for the next one") {
		t.Fatalf("login with the code the signup spent: %s", login)
	}
	// Without the password, nothing but the usual answer.
	wrong := c.Warden(t.TempDir(), strings.NewReader("not the password at all\n"),
		"login", "--proxy", c.ProxyAddr(), "--user", u.Name, "--password-stdin", "--otp", code)
	if wrong.Code == 0 || strings.Contains(wrong.Stderr, "already used") || !strings.Contains(wrong.Stderr, "authentication failed") {
		t.Fatalf("wrong password with the spent code: %s", wrong)
	}
}

// TestLoginAnswersOverHTTPS: over the real API, unknown and invited users
// get the same status and body; a burst of failures from one address is
// throttled (429, Retry-After) and audited with the TCP peer's address,
// whatever X-Forwarded-For says.
func TestLoginAnswersOverHTTPS(t *testing.T) {
	t.Parallel()
	c := New(t, Options{NoNode: true})
	ctx := context.Background()
	if _, err := c.Admin.CreateUser(ctx, auth.CreateUserRequest{Name: "invited", Roles: []string{"access"}}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer hc.CloseIdleConnections()
	post := func(user string) (int, string, http.Header) {
		t.Helper()
		body, _ := json.Marshal(auth.LoginRequest{User: user, Password: "a wrong password", OTP: "123456",
			PublicKey: strings.TrimSpace(pubKeyLine(t))})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+c.ProxyAddr()+"/v1/login", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", "198.51.100.77")
		req.Header.Set("X-Real-IP", "198.51.100.77")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	st1, body1, _ := post("nobody")
	st2, body2, _ := post("invited")
	if st1 != http.StatusUnauthorized || st1 != st2 || body1 != body2 {
		t.Fatalf("unknown user: %d %s; invited user: %d %s; want the same 401", st1, body1, st2, body2)
	}
	var st int
	var body string
	var hdr http.Header
	for range auth.DefaultAccountLimit.Burst - 1 {
		if st, body, _ = post("invited"); st != http.StatusUnauthorized {
			t.Fatalf("failure within the allowance: %d %s", st, body)
		}
	}
	st, body, hdr = post("invited")
	retry, _ := strconv.Atoi(hdr.Get("Retry-After"))
	if st != http.StatusTooManyRequests || retry <= 0 || !strings.Contains(body, "too many failed attempts from this address") {
		t.Fatalf("attempt past the allowance: %d %s (Retry-After %q), want 429", st, body, hdr.Get("Retry-After"))
	}
	evs, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.LoginThrottled})
	if err != nil || len(evs) != 1 || evs[0].RemoteAddr != "127.0.0.1" || evs[0].User != "invited" {
		t.Fatalf("user.login_throttled events %+v (%v), want one from 127.0.0.1", evs, err)
	}
	logins, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.UserLogin})
	if err != nil || len(logins) == 0 {
		t.Fatalf("user.login events: %v", err)
	}
	for _, ev := range logins {
		if ev.RemoteAddr != "127.0.0.1" {
			t.Fatalf("user.login from %q: the address must be the TCP peer, not a header", ev.RemoteAddr)
		}
	}
}

// TestNodeCannotForgeAuditEvents: a joined node, with its own certificate
// over the real API, tries to write auth's events (a login, a lock's
// removal, with a time of its choosing): refused with 403 and audited; its
// own events are stamped by auth.
func TestNodeCannotForgeAuditEvents(t *testing.T) {
	t.Parallel()
	c := New(t, Options{NoNode: true})
	ctx := context.Background()
	var dataDir string
	c.StartNode("web2", nil, func(cfg *nodeagent.Config) { dataDir = cfg.DataDir })
	id, err := idfile.Read(filepath.Join(dataDir, "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	nc := nodeClient(t, c, id)
	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	err = nc.EmitEvents(ctx, []audit.Event{
		{ID: "forged-login", Event: audit.UserLogin, Code: "L001I", User: "admin", RemoteAddr: "10.0.0.1", Success: true, Time: past},
		{ID: "forged-unlock", Event: "lock.deleted", User: "admin", Success: true, Time: past},
	})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, `may not emit "user.login"`) {
		t.Fatalf("forged events: %v, want 403 naming user.login", err)
	}
	for _, q := range []audit.Query{{Type: audit.UserLogin}, {Type: "lock.deleted"}} {
		if evs, _ := c.Admin.SearchAudit(ctx, q); len(evs) != 0 {
			t.Fatalf("forged %s stored: %+v", q.Type, evs)
		}
	}
	refused, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.EventRefused})
	if err != nil || len(refused) != 1 || refused[0].Fields["emitter"] != "node:"+id.NodeID {
		t.Fatalf("audit.event_refused %+v (%v), want one from node:%s", refused, err, id.NodeID)
	}
	// A node's own event is kept, with auth's time and the node as sender.
	before := time.Now()
	if err := nc.EmitEvents(ctx, []audit.Event{{ID: "own-exec", Event: audit.Exec, User: "dev", Success: true, Time: past}}); err != nil {
		t.Fatal(err)
	}
	evs, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.Exec, Node: "web2"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("exec events %+v (%v)", evs, err)
	}
	if ev := evs[0]; ev.Time.Before(before.Add(-time.Second)) || ev.Fields["emitter"] != "node:"+id.NodeID ||
		ev.Fields["emitter_time"] != "2001-02-03T04:05:06Z" {
		t.Fatalf("stored %+v, want auth's time, emitter node:%s and the claimed time kept aside", ev, id.NodeID)
	}
}

// pubKeyLine is a fresh Ed25519 public key in authorized_keys format.
func pubKeyLine(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(sp))
}
