package node

import (
	"context"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"golang.org/x/crypto/ssh"
)

// TestAccess pins the node's own access decision against the roles and
// locks its feed pushed: nothing before the first snapshot, the login and
// labels of the roles, locks at connect and on live connections, and
// lock_mode strict's bound on a stale view.
func TestAccess(t *testing.T) {
	roles, err := policy.ParseRoles([]byte(`
kind: role
metadata: {name: dev}
spec:
  allow:
    logins: [dev]
    node_labels: {env: dev}
---
kind: role
metadata: {name: strict}
spec:
  options: {lock_mode: strict}
  allow:
    logins: [ops]
    node_labels: {env: dev}
`))
	if err != nil {
		t.Fatal(err)
	}
	cert := func(role string) *ssh.Certificate {
		return &ssh.Certificate{CertType: ssh.UserCert, KeyId: "alice", ValidPrincipals: []string{"dev", "ops"},
			ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
			Permissions: ssh.Permissions{Extensions: map[string]string{ca.ExtRoles: `["` + role + `"]`, "permit-pty": ""}}}
	}
	a := NewAccess(AccessConfig{NodeName: "web1", NodeID: "n1", MaxStale: time.Minute,
		Labels: func() map[string]string { return map[string]string{"env": "dev"} }, FeedInterval: time.Second})
	authz := func(c *ssh.Certificate, login string) (*Permissions, error) {
		return a.Authorize(context.Background(), AuthzRequest{Cert: c, Login: login})
	}

	if _, err := authz(cert("dev"), "dev"); err == nil {
		t.Fatal("allowed before the first snapshot")
	}
	a.Confirm()
	a.Replace(roles, nil)
	p, err := authz(cert("dev"), "dev")
	if err != nil || !p.PTY || p.User != "alice" {
		t.Fatalf("dev as dev: %+v, %v", p, err)
	}
	if _, err := authz(cert("dev"), "root"); err == nil {
		t.Fatal("login root allowed to role dev")
	}
	live := ConnInfo{User: "alice", Login: "dev", Cert: cert("dev"), Identity: p.Identity}
	if reason, _ := a.Revoked(live); reason != "" {
		t.Fatalf("live connection revoked without a change: %s", reason)
	}

	a.PutLock(&lock.Lock{ID: "l1", Target: lock.Target{User: "alice"}, Message: "incident"})
	if _, err := authz(cert("dev"), "dev"); err == nil {
		t.Fatal("locked user allowed")
	}
	if reason, msg := a.Revoked(live); reason != "locked" || msg == "" {
		t.Fatalf("locked live connection: %q %q", reason, msg)
	}
	a.DeleteLock("l1")
	a.DeleteRole("dev")
	if reason, _ := a.Revoked(live); reason != "access changed" {
		t.Fatalf("live connection after its role was deleted: %q", reason)
	}

	// lock_mode strict: refused, and ended, once the view is stale.
	if _, err := authz(cert("strict"), "ops"); err != nil {
		t.Fatalf("strict role with a fresh view: %v", err)
	}
	a.Lost()
	a.lostAt.Store(time.Now().Add(-2 * time.Minute).UnixNano())
	if a.Staleness() <= a.MaxStale() {
		t.Fatalf("staleness %s after the feed was lost 2 minutes ago", a.Staleness())
	}
	if _, err := authz(cert("strict"), "ops"); err == nil {
		t.Fatal("strict role allowed with a stale view")
	}
	strictLive := ConnInfo{User: "alice", Login: "ops", Cert: cert("strict")}
	if reason, _ := a.StrictUnverified(a.Staleness())(strictLive); reason != "lock view stale" {
		t.Fatalf("strict live connection with a stale view: %q", reason)
	}
}
