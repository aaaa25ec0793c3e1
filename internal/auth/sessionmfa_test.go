package auth_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

// TestIssueSessionCert pins what a per-session MFA check yields: a
// certificate for the one node and login, valid a minute, marked, with the
// device; a wrong or replayed code gives nothing; a batch only where every
// role allows one, within its bounds; a use counted once.
func TestIssueSessionCert(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	roles, err := policy.ParseRoles([]byte(`
kind: role
metadata: {name: prod}
spec:
  options: {require_session_mfa: true}
  allow:
    logins: [ops]
    node_labels: {env: prod}
---
kind: role
metadata: {name: batch}
spec:
  options: {require_session_mfa: true, session_mfa_window: 5m, session_mfa_max_sessions: 3}
  allow:
    logins: [ops]
    node_labels: {env: prod}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles {
		if err := f.a.UpsertRole(ctx, auth.AdminCaller(), r); err != nil {
			t.Fatal(err)
		}
	}
	f.a.SetInventory(staticInventory{
		{ID: "p1", Name: "web1", Labels: map[string]string{"env": "prod"}},
		{ID: "p2", Name: "web2", Labels: map[string]string{"env": "prod"}},
		{ID: "d1", Name: "dev1", Labels: map[string]string{"env": "dev"}},
	})
	secret := f.signup("alice", []string{"prod"}, []string{"ops"})
	alice := auth.Caller{Kind: auth.KindUser, User: "alice", Roles: []string{"prod"}}
	testkit.WaitFor(t, "the role to apply", func() bool {
		st, err := f.a.SessionMFAStatus(ctx, alice, wire.SessionMFAQuery{Nodes: []string{"p1"}, Login: "ops"})
		return err == nil && st.Required && st.TOTP
	})
	pub := pubKey(t)
	req := wire.SessionCertRequest{PublicKey: pub, Nodes: []string{"p1"}, Login: "ops"}

	req.MFA = wire.MFAResponse{OTP: "000000"}
	if _, err := f.a.IssueSessionCert(ctx, alice, req); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("a wrong code: %v", err)
	}
	code := f.code(secret)
	req.MFA = wire.MFAResponse{OTP: code}
	sc, err := f.a.IssueSessionCert(ctx, alice, req)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(sc.SSHCert))
	if err != nil {
		t.Fatal(err)
	}
	cert := k.(*ssh.Certificate)
	id, err := ca.IdentityFromSSHCert(cert)
	if err != nil {
		t.Fatal(err)
	}
	if id.SessionMFA == nil || len(id.SessionMFA.Nodes) != 1 || id.SessionMFA.Nodes[0] != "p1" || id.SessionMFA.MaxSessions != 1 {
		t.Fatalf("mark %+v", id.SessionMFA)
	}
	if id.SessionMFA.Until != 0 {
		t.Fatalf("until %d for a caller without an expiry", id.SessionMFA.Until)
	}
	if id.MFADevice == "" || id.MFADevice != sc.Device {
		t.Fatalf("device %q / %q", id.MFADevice, sc.Device)
	}
	if life := time.Unix(int64(cert.ValidBefore), 0).Sub(f.clock.Now()); life > policy.SessionMFATTL+time.Second {
		t.Fatalf("a per-session certificate valid %s", life)
	}
	if got := strings.Join(cert.ValidPrincipals, ","); got != "ops,"+ca.InternalPrincipalPrefix+"alice" {
		t.Fatalf("principals %s", got)
	}
	// The code again: replayed.
	if _, err := f.a.IssueSessionCert(ctx, alice, req); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("a replayed code: %v", err)
	}
	// Uses: one, then refused.
	exp := time.Unix(int64(cert.ValidBefore), 0)
	if err := f.a.SpendSessionCert(ctx, cert.Serial, exp, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.a.SpendSessionCert(ctx, cert.Serial, exp, 1); err == nil {
		t.Fatal("a per-session certificate used twice")
	}

	// A node the roles do not allow: refused before any check.
	f.clock.Advance(30 * time.Second)
	req.Nodes, req.MFA = []string{"d1"}, wire.MFAResponse{OTP: f.code(secret)}
	if _, err := f.a.IssueSessionCert(ctx, alice, req); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("a node the roles do not allow: %v", err)
	}
	// A batch: refused to prod alone, within bounds with batch alone.
	req.Nodes = []string{"p1", "p2"}
	if _, err := f.a.IssueSessionCert(ctx, alice, req); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("a batch without session_mfa_window: %v", err)
	}
	loginExpiry := f.clock.Now().Add(time.Hour).Truncate(time.Second)
	batcher := auth.Caller{Kind: auth.KindUser, User: "alice", Roles: []string{"batch"}, Expires: loginExpiry}
	req.Sessions = 4
	if _, err := f.a.IssueSessionCert(ctx, batcher, req); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("a batch beyond session_mfa_max_sessions: %v", err)
	}
	req.Sessions = 3
	sc, err = f.a.IssueSessionCert(ctx, batcher, req)
	if err != nil {
		t.Fatal(err)
	}
	if sc.MaxSessions != 3 || sc.Expires.Sub(f.clock.Now()) > 5*time.Minute+time.Second {
		t.Fatalf("batch certificate %+v", sc)
	}
	// Its sessions end no later than the login certificate.
	k, _, _, _, err = ssh.ParseAuthorizedKey([]byte(sc.SSHCert))
	if err != nil {
		t.Fatal(err)
	}
	if id, err = ca.IdentityFromSSHCert(k.(*ssh.Certificate)); err != nil || id.SessionMFA.Until != loginExpiry.Unix() {
		t.Fatalf("until %+v %v, want %d", id.SessionMFA, err, loginExpiry.Unix())
	}
}

// TestSessionMFAClusterWide: auth.require_session_mfa requires the check
// for every node, whatever the roles say (the proxy's decision).
func TestSessionMFAClusterWide(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		f := newFixture(t, func(c *auth.Config) { c.RequireSessionMFA = cluster })
		n := auth.Node{ID: "d1", Name: "dev1", Labels: map[string]string{"env": "dev"}}
		if got := f.a.SessionMFANeeded([]string{"access"}, nil, n); got != cluster {
			t.Errorf("cluster setting %v: session MFA needed = %v", cluster, got)
		}
	}
}

// TestIssueSessionCertWithPasskey: the CLI's passkey check through the
// browser (the MFA hand-off's single-use token) yields a per-session
// certificate carrying the passkey's device; the token works once; a
// WebAuthn assertion made directly works too.
func TestIssueSessionCertWithPasskey(t *testing.T) {
	f := passkeyFixture(t)
	ctx := context.Background()
	roles, err := policy.ParseRoles([]byte(`
kind: role
metadata: {name: prod}
spec:
  options: {require_session_mfa: true}
  allow:
    logins: [ops]
    node_labels: {'*': '*'}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.a.UpsertRole(ctx, auth.AdminCaller(), roles[0]); err != nil {
		t.Fatal(err)
	}
	f.a.SetInventory(staticInventory{{ID: "p1", Name: "web1"}})
	f.signup("alice", []string{"prod"}, []string{"ops"})
	c := f.userCaller("alice", []string{"prod"})
	key := newSoftKey(t)
	laptop := f.addPasskey(c, "laptop", key)
	testkit.WaitFor(t, "the role to apply", func() bool {
		st, err := f.a.SessionMFAStatus(ctx, c, wire.SessionMFAQuery{Nodes: []string{"p1"}, Login: "ops"})
		return err == nil && st.Required && st.WebAuthn
	})
	h, err := f.a.BeginMFAHandoff(ctx, c, wire.PasskeyHandoffBegin{ClientRedirect: "http://127.0.0.1:5555/callback"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(h.URL)
	state := u.Query().Get("state")
	ch, err := f.a.BeginHandoffMFAChallenge(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.a.FinishMFAHandoff(ctx, state, wire.MFAResponse{ChallengeID: ch.ID, WebAuthn: key.get(ch.WebAuthn)})
	if err != nil {
		t.Fatal(err)
	}
	back, _ := url.Parse(res.Redirect)
	tok, err := f.a.ResultMFAHandoff(ctx, wire.PasskeyResultRequest{ID: h.ID, ResultToken: h.ResultToken, Code: back.Query().Get("code")})
	if err != nil {
		t.Fatal(err)
	}
	req := wire.SessionCertRequest{PublicKey: pubKey(t), Nodes: []string{"p1"}, Login: "ops", MFA: *tok}
	sc, err := f.a.IssueSessionCert(ctx, c, req)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Device != laptop.ID {
		t.Fatalf("device %q, want the passkey %q", sc.Device, laptop.ID)
	}
	if _, err := f.a.IssueSessionCert(ctx, c, req); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("a spent MFA token: %v", err)
	}
	mc, err := f.a.BeginMFAChallenge(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	req.MFA = wire.MFAResponse{ChallengeID: mc.ID, WebAuthn: key.get(mc.WebAuthn)}
	if sc, err = f.a.IssueSessionCert(ctx, c, req); err != nil || sc.Device != laptop.ID {
		t.Fatalf("with an assertion: %+v %v", sc, err)
	}
}
