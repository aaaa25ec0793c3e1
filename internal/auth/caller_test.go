package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/policy"
)

// callerOf is the Caller the API builds from a TLS client certificate.
func callerOf(t *testing.T, certPEM string) auth.Caller {
	t.Helper()
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.IdentityFromTLSCert(leaf)
	if err != nil {
		t.Fatal(err)
	}
	return auth.Caller{Kind: id.Kind, User: id.Username, Roles: id.Roles, Traits: id.Traits,
		RequestIDs: id.RequestIDs, Issued: id.Issued, Expires: leaf.NotAfter, MFADevice: id.MFADevice}
}

// TestCurrentCallerFollowsState: a user's certificate is judged by the
// current state: the current roles (and those of its approved requests)
// authorize; a request past its expiry is refused even before the sweeper
// stores EXPIRED (and the sweeper then locks it); a removed user is refused
// by the user record even without the lock that removal made.
func TestCurrentCallerFollowsState(t *testing.T) {
	f := newFixture(t, func(c *auth.Config) { c.SweepInterval = time.Hour })
	a, ctx := f.a, context.Background()
	roles, err := policy.ParseRoles([]byte(`
kind: role
metadata: {name: requester}
spec:
  allow:
    logins: [dev]
    request: {roles: [reader], thresholds: {approve: 1}}
---
kind: role
metadata: {name: reader}
spec:
  allow:
    rules: [{resources: [audit], verbs: [list]}]
---
kind: role
metadata: {name: approver}
spec:
  allow:
    review_requests: {roles: [reader]}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles {
		if err := a.UpsertRole(ctx, auth.AdminCaller(), r); err != nil {
			t.Fatal(err)
		}
	}
	secret := f.signup("dev", []string{"requester"}, []string{"dev"})
	resp, err := a.Login(ctx, auth.LoginRequest{User: "dev", Password: "a good long password", OTP: f.code(secret), PublicKey: pubKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	dev := callerOf(t, resp.TLSCert)
	if dev.Issued.IsZero() || !strings.HasPrefix(dev.MFADevice, "totp-") {
		t.Fatalf("login certificate without issue time or MFA device: %+v", dev)
	}
	cur, err := a.CurrentCaller(ctx, dev, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.SearchAudit(ctx, cur, audit.Query{}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("requester read the audit log: %v", err)
	}

	// The role cache follows the backend's watch; retry until it has the roles.
	var id string
	for deadline := time.Now().Add(5 * time.Second); ; {
		r, err := a.CreateAccessRequest(ctx, cur, auth.CreateAccessRequest{Roles: []string{"reader"}, Duration: 10 * time.Minute})
		if err == nil {
			id = r.ID
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	bob := auth.Caller{Kind: auth.KindUser, User: "bob", Roles: []string{"approver"}}
	if _, err := a.ReviewAccessRequest(ctx, bob, id, true, "ok"); err != nil {
		t.Fatal(err)
	}
	used, err := a.UseAccessRequest(ctx, cur, id, pubKey(t), "")
	if err != nil {
		t.Fatal(err)
	}
	elevated := callerOf(t, used.TLSCert)
	if strings.Join(elevated.RequestIDs, ",") != id || elevated.MFADevice != dev.MFADevice {
		t.Fatalf("request certificate: %+v", elevated)
	}
	cur, err = a.CurrentCaller(ctx, elevated, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.SearchAudit(ctx, cur, audit.Query{}); err != nil {
		t.Fatalf("the approved request's role: %v", err)
	}

	// Past the request's end the certificate has expired too; without that
	// check (a stream already open), the request's own state refuses it.
	f.clock.Advance(10*time.Minute + time.Second)
	elevated.Expires = time.Time{}
	if _, err := a.CurrentCaller(ctx, elevated, "test", ""); !errors.Is(err, auth.ErrAccessDenied) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired request: %v", err)
	}
	auth.SweepRequests(a, ctx)
	locks, err := a.ListLocks(ctx, auth.AdminCaller())
	if err != nil || len(locks) != 1 || locks[0].Target.Request != id {
		t.Fatalf("locks after the request expired: %v %v", locks, err)
	}

	// Removal: refused by the lock it makes and, without the lock, by the
	// user record.
	if err := a.DeleteUser(ctx, auth.AdminCaller(), "dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CurrentCaller(ctx, dev, "test", ""); err == nil || !strings.Contains(err.Error(), "user dev was removed") {
		t.Fatalf("removed user: %v", err)
	}
	locks, _ = a.ListLocks(ctx, auth.AdminCaller())
	for _, l := range locks {
		if err := a.DeleteLock(ctx, auth.AdminCaller(), l.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.CurrentCaller(ctx, dev, "test", ""); !errors.Is(err, auth.ErrAccessDenied) || !strings.Contains(err.Error(), "no longer exists") {
		t.Fatalf("removed user, lock removed: %v", err)
	}
	evs, err := f.b.AuditLog().Search(ctx, audit.Query{Type: audit.CertRefused, User: "dev"})
	if err != nil || len(evs) != 3 {
		t.Fatalf("%s events: %d, %v", audit.CertRefused, len(evs), err)
	}
}
