package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/storage/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	a     *auth.Server
	b     *sqlite.Backend
	clock *clock
	path  string // of the database
}

// newFixture starts auth on a fresh SQLite backend with a controllable
// clock; mods adjust its configuration.
func newFixture(t *testing.T, mods ...func(*auth.Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Now().Truncate(30 * time.Second).Add(5 * time.Second)}
	path := filepath.Join(t.TempDir(), "w.db")
	b, err := sqlite.Open(ctx, sqlite.Config{Path: path, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	cfg := auth.Config{ClusterName: "test", Backend: b, Audit: b.AuditLog(), PublicAddr: "proxy:3080", Now: clk.Now}
	for _, m := range mods {
		m(&cfg)
	}
	a, err := auth.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return &fixture{t: t, a: a, b: b, clock: clk, path: path}
}

// joinNode joins a node called name with a fresh join token and returns
// it as a caller.
func (f *fixture) joinNode(name string) auth.Caller {
	f.t.Helper()
	ctx := context.Background()
	tok, err := f.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: "node", TTL: time.Minute})
	if err != nil {
		f.t.Fatal(err)
	}
	joined, err := f.a.JoinNode(ctx, auth.JoinRequest{Token: tok.Token, Name: name, Hostname: name, PublicKey: pubKey(f.t)})
	if err != nil {
		f.t.Fatal(err)
	}
	return auth.Caller{Kind: auth.KindNode, NodeID: joined.NodeID}
}

func pubKey(t *testing.T) string {
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

// signup creates an active user and returns its TOTP secret.
func (f *fixture) signup(name string, roles, logins []string) string {
	f.t.Helper()
	ctx := context.Background()
	inv, err := f.a.CreateUser(ctx, auth.AdminCaller(), auth.CreateUserRequest{Name: name, Roles: roles, Logins: logins})
	if err != nil {
		f.t.Fatal(err)
	}
	if !strings.HasPrefix(inv.URL, "https://proxy:3080/web/invite/") {
		f.t.Fatalf("invite url %q", inv.URL)
	}
	ch, err := f.a.BeginSignup(ctx, auth.SignupRequest{Token: inv.Token})
	if err != nil {
		f.t.Fatal(err)
	}
	complete := func(pw, otp string) error {
		resp, err := f.a.CompleteSignup(ctx, auth.SignupRequest{Token: inv.Token, Password: pw, OTP: otp})
		if resp != nil {
			f.t.Fatalf("a signup without a public key returned certificates")
		}
		return err
	}
	if err := complete("short", f.code(ch.Secret)); !errors.Is(err, auth.ErrBadRequest) {
		f.t.Fatalf("short password accepted: %v", err)
	}
	if err := complete("a good long password", "000000"); !errors.Is(err, auth.ErrBadRequest) {
		f.t.Fatalf("wrong TOTP accepted at signup: %v", err)
	}
	if err := complete("a good long password", f.code(ch.Secret)); err != nil {
		f.t.Fatal(err)
	}
	// The invite is single use.
	if _, err := f.a.BeginSignup(ctx, auth.SignupRequest{Token: inv.Token}); !errors.Is(err, auth.ErrUnauthenticated) {
		f.t.Fatalf("used invite accepted again: %v", err)
	}
	f.clock.Advance(30 * time.Second) // the signup spent this TOTP step
	return ch.Secret
}

func (f *fixture) code(secret string) string {
	c, err := identity.TOTPCode(secret, f.clock.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func TestLoginIssuesCertificates(t *testing.T) {
	f := newFixture(t)
	secret := f.signup("dev", []string{"access"}, []string{"dev", "deploy"})
	resp, err := f.a.Login(context.Background(), auth.LoginRequest{User: "dev", Password: "a good long password",
		OTP: f.code(secret), PublicKey: pubKey(t), TTL: 100 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.SSHCert))
	if err != nil {
		t.Fatal(err)
	}
	cert := pub.(*ssh.Certificate)
	id, err := ca.IdentityFromSSHCert(cert)
	if err != nil {
		t.Fatal(err)
	}
	if id.Username != "dev" || strings.Join(id.Roles, ",") != "access" {
		t.Fatalf("identity %+v", id)
	}
	if strings.Join(resp.Logins, ",") != "dev,deploy" {
		t.Fatalf("logins %v", resp.Logins)
	}
	// The TTL is capped at the role's max_session_ttl (8h by default).
	ttl := time.Unix(int64(cert.ValidBefore), 0).Sub(f.clock.Now())
	if ttl > 8*time.Hour || ttl < 7*time.Hour {
		t.Fatalf("ttl %s, want 8h cap", ttl)
	}
	if _, ok := cert.Extensions["permit-port-forwarding"]; ok {
		t.Fatal("access role must not permit port forwarding")
	}
	evs, err := f.b.AuditLog().Search(context.Background(), audit.Query{Type: audit.CertIssued, User: "dev"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("cert.issued events: %v %v", evs, err)
	}
}

func TestLoginFailures(t *testing.T) {
	f := newFixture(t)
	secret := f.signup("dev", []string{"access"}, []string{"dev"})
	ctx := context.Background()
	login := func(user, pw, otp string) error {
		_, err := f.a.Login(ctx, auth.LoginRequest{User: user, Password: pw, OTP: otp, PublicKey: pubKey(t)})
		return err
	}
	for _, tc := range []struct {
		name, user, pw, otp string
	}{
		{"unknown user", "nobody", "a good long password", f.code(secret)},
		{"wrong password", "dev", "wrong password!!", f.code(secret)},
		{"wrong otp", "dev", "a good long password", "123456"},
	} {
		if err := login(tc.user, tc.pw, tc.otp); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: err = %v, want ErrUnauthenticated", tc.name, err)
		}
	}
	// A good login, then the same code again is a replay.
	code := f.code(secret)
	if err := login("dev", "a good long password", code); err != nil {
		t.Fatal(err)
	}
	if err := login("dev", "a good long password", code); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("replayed TOTP accepted: %v", err)
	}
	evs, _ := f.b.AuditLog().Search(ctx, audit.Query{Type: audit.UserLogin})
	var reasons []string
	for _, ev := range evs {
		if !ev.Success {
			reasons = append(reasons, ev.Error)
		}
	}
	want := "unknown user|wrong password|invalid TOTP code|TOTP code replayed"
	if strings.Join(reasons, "|") != want {
		t.Fatalf("failure reasons %q, want %q", strings.Join(reasons, "|"), want)
	}
}

func TestJoinTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, err := f.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: "node", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	join := func(token string) error {
		_, err := f.a.JoinNode(ctx, auth.JoinRequest{Token: token, Name: "web1", Hostname: "web1", PublicKey: pubKey(t)})
		return err
	}
	if err := join("not-a-token"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("bogus token: %v", err)
	}
	if err := join(tok.Token); err != nil {
		t.Fatal(err)
	}
	if err := join(tok.Token); !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("single-use token reused: %v", err)
	}
	exp, err := f.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: "node", TTL: time.Minute, Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Minute)
	if err := join(exp.Token); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("expired token accepted: %v", err)
	}
	if _, err := f.a.JoinNode(ctx, auth.JoinRequest{Token: tok.Token, Name: "bad name!", Hostname: "x", PublicKey: pubKey(t)}); !errors.Is(err, auth.ErrBadRequest) {
		t.Fatalf("bad node name: %v", err)
	}
}

func TestAuthorization(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dev := auth.Caller{Kind: auth.KindUser, User: "dev", Roles: []string{"access"}}
	auditor := auth.Caller{Kind: auth.KindUser, User: "aud", Roles: []string{"auditor"}}
	node := auth.Caller{Kind: auth.KindNode, NodeID: "n1"}
	if _, err := f.a.CreateUser(ctx, dev, auth.CreateUserRequest{Name: "x", Roles: []string{"admin"}}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("access role created a user: %v", err)
	}
	if _, err := f.a.SearchAudit(ctx, dev, audit.Query{}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("access role read audit: %v", err)
	}
	if _, err := f.a.SearchAudit(ctx, auditor, audit.Query{}); err != nil {
		t.Fatalf("auditor cannot read audit: %v", err)
	}
	if _, err := f.a.CreateToken(ctx, node, auth.CreateTokenRequest{Type: "node"}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("node created a token: %v", err)
	}
	if _, err := f.a.RenewNodeCerts(ctx, dev, pubKey(t)); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("user renewed node certificates: %v", err)
	}
	if _, err := f.a.CreateUser(ctx, auth.AdminCaller(), auth.CreateUserRequest{Name: "x", Roles: []string{"no-such-role"}}); !errors.Is(err, auth.ErrBadRequest) {
		t.Fatalf("unknown role accepted: %v", err)
	}
	if err := f.a.UpsertRole(ctx, auth.AdminCaller(), &policy.Role{Kind: "role", Metadata: policy.Metadata{Name: "bad name"}}); !errors.Is(err, auth.ErrBadRequest) {
		t.Fatalf("invalid role accepted: %v", err)
	}
	if _, err := f.a.GetRole(ctx, auth.AdminCaller(), "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing role: %v", err)
	}
}

type staticInventory []auth.Node

func (s staticInventory) Nodes() []auth.Node { return s }

// TestListNodesFiltersByRole checks that users see only nodes their roles
// allow, evaluated with the current role definitions.
func TestListNodesFiltersByRole(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	role, err := policy.ParseRoles([]byte(`
kind: role
metadata: {name: dev-only}
spec:
  allow:
    logins: [dev]
    node_labels: {env: dev}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.a.UpsertRole(ctx, auth.AdminCaller(), role[0]); err != nil {
		t.Fatal(err)
	}
	f.a.SetInventory(staticInventory{
		{ID: "2", Name: "p1", Labels: map[string]string{"env": "prod"}},
		{ID: "1", Name: "d1", Labels: map[string]string{"env": "dev", "team": "a"}},
	})
	user := auth.Caller{Kind: auth.KindUser, User: "u", Roles: []string{"dev-only"}}
	waitNodes := func(c auth.Caller, filter map[string]string, want string) {
		t.Helper()
		deadline := patience.Deadline(t)
		for {
			nodes, err := f.a.ListNodes(ctx, c, filter)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, n := range nodes {
				names = append(names, n.Name)
			}
			if strings.Join(names, ",") == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("nodes = %v, want %s", names, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitNodes(user, nil, "d1")
	waitNodes(auth.AdminCaller(), nil, "d1,p1")
	waitNodes(auth.AdminCaller(), map[string]string{"team": "a"}, "d1")
	// Deleting the role takes effect for the next call.
	if err := f.a.DeleteRole(ctx, auth.AdminCaller(), "dev-only"); err != nil {
		t.Fatal(err)
	}
	waitNodes(user, nil, "")
}
