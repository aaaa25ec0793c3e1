//go:build integration

package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/testkit"
)

// revokeRoles: ops may reach every node and request the auditor and
// prod-audit roles, which an approver grants alone; prod-audit reaches the
// env=prod nodes and reads the audit log.
const revokeRoles = `
kind: role
metadata: {name: ops}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: dev}
    request:
      roles: [auditor, prod-audit]
      thresholds: {approve: 1}
---
kind: role
metadata: {name: prod-audit}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: prod}
    rules:
      - resources: [audit]
        verbs: [list, read]
---
kind: role
metadata: {name: approver}
spec:
  allow:
    review_requests: {roles: [auditor, prod-audit]}
`

// profileAPI is an API client with the TLS certificate the profile in home
// holds now, as the warden CLI uses it.
func profileAPI(t *testing.T, home string) *api.Client {
	t.Helper()
	p, err := client.LoadProfile(home)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.APIClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// wantForbidden fails unless err is the API's 403 with a reason containing
// reason.
func wantForbidden(t *testing.T, what string, err error, reason string) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) || e.Status != http.StatusForbidden || !strings.Contains(e.Message, reason) {
		t.Fatalf("%s: got %v, want 403 with %q", what, err, reason)
	}
	t.Logf("%s: 403 %s", what, e.Message)
}

// wantSSHRefused runs a new ssh and fails unless it is refused with reason.
func wantSSHRefused(t *testing.T, what string, args []string, reason string) {
	t.Helper()
	r := Run(t, nil, "ssh", args...)
	if r.Code == 0 || !strings.Contains(r.Stderr, reason) {
		t.Fatalf("%s: new ssh not refused with %q: %s", what, reason, r)
	}
}

// waitAudit waits for an audit event of type typ whose JSON contains want.
func waitAudit(t *testing.T, c *Cluster, typ, want string) {
	t.Helper()
	testkit.WaitFor(t, typ+" with "+want, func() bool {
		evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: typ})
		if err != nil {
			return false
		}
		for _, ev := range evs {
			if b, _ := json.Marshal(ev); strings.Contains(string(b), want) {
				return true
			}
		}
		return false
	})
}

// TestRemovedUserIsCutOff: once `warden users rm` returns, the removed
// user's still-valid certificates work nowhere: API calls (an admin can no
// longer create users or join tokens), a follower of the audit log, live
// SSH sessions (through ProxyCommand and ssh -J, with the real OpenSSH
// client), new SSH connections and certificate renewal with an approved
// access request.
func TestRemovedUserIsCutOff(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "web1", NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(revokeRoles)
	ctx := context.Background()
	zed := c.AddUser("zed", []string{"admin", "ops"}, []string{osLogin})
	rita := c.AddUser("rita", []string{"approver"}, nil)
	home := c.Login(zed)
	cfg, jcfg := c.SSHConfig(home), jumpConfig(t, c, home)
	zapi := profileAPI(t, home)

	// Before: zed is an admin, with an approved request to renew with.
	if _, err := zapi.CreateToken(ctx, auth.CreateTokenRequest{Type: "node", TTL: time.Minute}); err != nil {
		t.Fatalf("admin before removal: %v", err)
	}
	req, err := zapi.CreateAccessRequest(ctx, auth.CreateAccessRequest{Roles: []string{"auditor"}, Reason: "audit"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := profileAPI(t, c.Login(rita)).ReviewAccessRequest(ctx, req.ID, true, "ok"); err != nil {
		t.Fatal(err)
	}
	tailCtx, stopTail := context.WithCancel(ctx)
	defer stopTail()
	tailed := make(chan error, 1)
	go func() { tailed <- zapi.TailAudit(tailCtx, 0, func(audit.Event) error { return nil }) }()
	waitPC, armPC := liveSession(t, sshArgs(cfg, osLogin+"@web1", "echo started; sleep 120"))
	waitJ, armJ := liveSession(t, sshArgs(jcfg, "-J", "wjump", osLogin+"@web1", "echo started; sleep 120"))

	armPC()
	armJ()
	if r := c.Warden(t.TempDir(), nil, "users", "rm", "zed"); r.Code != 0 {
		t.Fatalf("users rm: %s", r)
	}
	for _, s := range []struct {
		name string
		wait func() (Result, time.Duration)
	}{{"ProxyCommand", waitPC}, {"ssh -J", waitJ}} {
		r, took := s.wait()
		if r.Code == 0 || !strings.Contains(r.Stderr, "user zed was removed") {
			t.Fatalf("%s: live session of a removed user: %s", s.name, r)
		}
		t.Logf("%s: the live session ended %s after users rm was called", s.name, took.Round(time.Millisecond))
	}
	select {
	case err := <-tailed:
		t.Logf("the audit follower ended: %v", err)
	case <-time.After(patience.Left(t)):
		t.Fatal("a removed user still follows the audit log")
	}

	_, err = zapi.CreateUser(ctx, auth.CreateUserRequest{Name: "eve", Roles: []string{"admin"}})
	wantForbidden(t, "POST /v1/users", err, "user zed was removed")
	_, err = zapi.CreateToken(ctx, auth.CreateTokenRequest{Type: "node", TTL: time.Minute})
	wantForbidden(t, "POST /v1/tokens", err, "user zed was removed")
	pub, err := os.ReadFile(filepath.Join(home, "key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = zapi.UseAccessRequest(ctx, req.ID, string(pub))
	wantForbidden(t, "renewal with an approved request", err, "user zed was removed")
	wantSSHRefused(t, "ProxyCommand", sshArgs(cfg, osLogin+"@web1", "true"), "user zed was removed")
	wantSSHRefused(t, "ssh -J", sshArgs(jcfg, "-J", "wjump", osLogin+"@web1", "true"), "user zed was removed")
	if r := c.Warden(t.TempDir(), nil, "locks", "ls"); !strings.Contains(r.Stdout, "user=zed, certificates issued by") {
		t.Fatalf("locks ls does not show the removal: %s", r)
	}
	waitAudit(t, c, audit.CertRefused, `"via":"api POST /v1/users"`)
	waitAudit(t, c, audit.CertRefused, `"via":"proxy"`)
	// The name is free again, and the new zed's certificates are not the
	// old one's: the old ones stay void.
	zed2 := c.AddUser("zed", []string{"access"}, []string{osLogin})
	if r := Run(t, nil, "ssh", sshArgs(c.SSHConfig(c.Login(zed2)), osLogin+"@web1", "true")...); r.Code != 0 {
		t.Fatalf("ssh as the new zed: %s", r)
	}
	_, err = zapi.ListNodes(ctx, nil)
	wantForbidden(t, "the old zed's certificate", err, "user zed was removed")
}

// TestResetUserVoidsCertificates: a reset ends the user's live sessions and
// voids their certificates; once they sign up again with the new invite,
// their new login works at once.
func TestResetUserVoidsCertificates(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "web1"})
	ctx := context.Background()
	u := c.AddUser("rex", []string{"access", "auditor"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	rapi := profileAPI(t, home)
	if _, err := rapi.SearchAudit(ctx, audit.Query{Limit: 1}); err != nil {
		t.Fatalf("audit before the reset: %v", err)
	}
	wait, arm := liveSession(t, sshArgs(cfg, osLogin+"@web1", "echo started; sleep 120"))
	arm()
	r := c.Warden(t.TempDir(), nil, "users", "reset", "rex")
	if r.Code != 0 {
		t.Fatalf("users reset: %s", r)
	}
	if r, _ := wait(); r.Code == 0 || !strings.Contains(r.Stderr, "user rex was reset") {
		t.Fatalf("live session after a reset: %s", r)
	}
	_, err := rapi.SearchAudit(ctx, audit.Query{Limit: 1})
	wantForbidden(t, "GET /v1/audit", err, "user rex was reset")
	wantSSHRefused(t, "ProxyCommand", sshArgs(cfg, osLogin+"@web1", "true"), "user rex was reset")

	token, _ := parseInvite(t, r.Stdout)
	ch, err := c.Admin.BeginSignup(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	u.TOTPSecret, u.next = ch.Secret, 0 // a new authenticator
	if _, err := c.Admin.CompleteSignup(ctx, auth.SignupRequest{Token: token, Password: u.Password, OTP: u.NextOTP(t)}); err != nil {
		t.Fatal(err)
	}
	home2 := c.Login(u)
	if r := Run(t, nil, "ssh", sshArgs(c.SSHConfig(home2), osLogin+"@web1", "true")...); r.Code != 0 {
		t.Fatalf("ssh after signing up again: %s", r)
	}
	if _, err := profileAPI(t, home2).SearchAudit(ctx, audit.Query{Limit: 1}); err != nil {
		t.Fatalf("audit after signing up again: %v", err)
	}
	_, err = rapi.SearchAudit(ctx, audit.Query{Limit: 1})
	wantForbidden(t, "the certificate from before the reset", err, "user rex was reset")
}

// TestRoleChangeUsesCurrentRoles: the API authorizes with the user's roles
// as stored now, not those in the certificate. A role added works at once
// with the same certificate; a role taken away voids the certificates, live
// sessions included.
func TestRoleChangeUsesCurrentRoles(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "web1"})
	ctx := context.Background()
	admin := t.TempDir()
	u := c.AddUser("rolf", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	rapi := profileAPI(t, home)
	_, err := rapi.SearchAudit(ctx, audit.Query{Limit: 1})
	wantForbidden(t, "GET /v1/audit without auditor", err, "list audit")

	if r := c.Warden(admin, nil, "users", "update", "rolf", "--roles", "access,auditor"); r.Code != 0 {
		t.Fatalf("users update: %s", r)
	}
	if _, err := rapi.SearchAudit(ctx, audit.Query{Limit: 1}); err != nil {
		t.Fatalf("GET /v1/audit with auditor added, same certificate: %v", err)
	}
	wait, arm := liveSession(t, sshArgs(c.SSHConfig(home), osLogin+"@web1", "echo started; sleep 120"))
	arm()
	if r := c.Warden(admin, nil, "users", "update", "rolf", "--roles", "auditor"); r.Code != 0 {
		t.Fatalf("users update: %s", r)
	}
	if r, _ := wait(); r.Code == 0 || !strings.Contains(r.Stderr, "your roles changed (access removed)") {
		t.Fatalf("live session after losing its role: %s", r)
	}
	_, err = rapi.SearchAudit(ctx, audit.Query{Limit: 1})
	wantForbidden(t, "GET /v1/audit with the certificate from before", err, "your roles changed")
	// Logged in again: the new roles, and only those.
	home2 := c.Login(u)
	if _, err := profileAPI(t, home2).SearchAudit(ctx, audit.Query{Limit: 1}); err != nil {
		t.Fatalf("GET /v1/audit after logging in again: %v", err)
	}
	if r := Run(t, nil, "ssh", sshArgs(c.SSHConfig(home2), osLogin+"@web1", "true")...); r.Code == 0 {
		t.Fatalf("ssh without the access role: %s", r)
	}
	waitAudit(t, c, audit.UserUpdate, `"previous_roles":["access","auditor"]`)
}

// TestRevokedRequestCutsAPI: the certificates from `warden request use`
// (SSH and TLS) carry the request, so revoking it ends the elevated API
// access as well as live and new SSH sessions.
func TestRevokedRequestCutsAPI(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "prod1", NodeLabels: map[string]string{"env": "prod"}})
	c.ApplyRoles(revokeRoles)
	ctx := context.Background()
	carl := c.AddUser("carl", []string{"ops"}, []string{osLogin})
	rita := c.AddUser("rita", []string{"approver"}, nil)
	home := c.Login(carl)
	r := c.Warden(home, nil, "request", "create", "--roles", "prod-audit", "--reason", "INC-7", "--nowait")
	if r.Code != 0 {
		t.Fatalf("request create: %s", r)
	}
	id := regexp.MustCompile(`Request (\S+) created`).FindStringSubmatch(r.Stdout)[1]
	if _, err := profileAPI(t, c.Login(rita)).ReviewAccessRequest(ctx, id, true, "ok"); err != nil {
		t.Fatal(err)
	}
	if r := c.Warden(home, nil, "request", "use", id); r.Code != 0 {
		t.Fatalf("request use: %s", r)
	}
	elevated := profileAPI(t, home)
	if _, err := elevated.SearchAudit(ctx, audit.Query{Limit: 1}); err != nil {
		t.Fatalf("GET /v1/audit with the approved request: %v", err)
	}
	cfg := c.SSHConfig(home)
	wait, arm := liveSession(t, sshArgs(cfg, osLogin+"@prod1", "echo started; sleep 120"))
	arm()
	if r := c.Warden(t.TempDir(), nil, "request", "revoke", id); r.Code != 0 {
		t.Fatalf("request revoke: %s", r)
	}
	if r, _ := wait(); r.Code == 0 || !strings.Contains(r.Stderr, "access request "+id+" was revoked") {
		t.Fatalf("live session after revocation: %s", r)
	}
	_, err := elevated.SearchAudit(ctx, audit.Query{Limit: 1})
	wantForbidden(t, "GET /v1/audit after revocation", err, "access request "+id+" was revoked")
	wantSSHRefused(t, "ProxyCommand", sshArgs(cfg, osLogin+"@prod1", "true"), "was revoked")
	waitAudit(t, c, audit.CertRefused, id)
}

// TestLockMFADevice: a lock on an MFA device ends the live sessions and
// refuses the API calls of certificates from logins made with it, and
// logins with it.
func TestLockMFADevice(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "web1"})
	ctx := context.Background()
	admin := t.TempDir()
	u := c.AddUser("mia", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	var users []auth.UserInfo
	if r := c.Warden(admin, nil, "users", "ls", "-o", "json"); r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &users) != nil {
		t.Fatalf("users ls: %s", r)
	}
	device := ""
	for _, x := range users {
		if x.Name == "mia" {
			device = x.MFADevice
		}
	}
	if !strings.HasPrefix(device, "totp-") {
		t.Fatalf("mia's MFA device: %q in %+v", device, users)
	}
	waitAudit(t, c, audit.UserLogin, `"mfa_device":"`+device+`"`)

	wait, arm := liveSession(t, sshArgs(c.SSHConfig(home), osLogin+"@web1", "echo started; sleep 120"))
	arm()
	lid := lockID(t, c.Warden(admin, nil, "lock", "--mfa-device", device, "--message", "phone lost"))
	if r, _ := wait(); r.Code == 0 || !strings.Contains(r.Stderr, "phone lost") {
		t.Fatalf("live session after the device lock: %s", r)
	}
	_, err := profileAPI(t, home).WhoAmI(ctx)
	wantForbidden(t, "GET /v1/whoami", err, "phone lost")
	r := c.Warden(t.TempDir(), strings.NewReader(u.Password+"\n"), "login", "--proxy", c.ProxyAddr(), "--user", "mia", "--password-stdin", "--otp", u.NextOTP(t))
	if r.Code == 0 || !strings.Contains(r.Stderr, "phone lost") {
		t.Fatalf("login with a locked device: %s", r)
	}
	if r := c.Warden(admin, nil, "unlock", lid); r.Code != 0 {
		t.Fatalf("unlock: %s", r)
	}
	if _, err := profileAPI(t, c.Login(u)).WhoAmI(ctx); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}
