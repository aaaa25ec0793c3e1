package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/policy"
)

// TestSessionMFA pins per-session MFA at the node: a certificate from
// login is refused where a role requires session MFA, with how to comply;
// a per-session certificate opens one session, on the node it names only,
// and the session it opened outlives its one minute.
func TestSessionMFA(t *testing.T) {
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
metadata: {name: dev}
spec:
  allow:
    logins: [ops]
    node_labels: {env: dev}
`))
	if err != nil {
		t.Fatal(err)
	}
	serial := uint64(1)
	cert := func(mark string) *ssh.Certificate {
		ext := map[string]string{ca.ExtRoles: `["prod","dev"]`, "permit-pty": ""}
		if mark != "" {
			ext[ca.ExtSessionMFA] = mark
		}
		serial++
		return &ssh.Certificate{CertType: ssh.UserCert, KeyId: "alice", ValidPrincipals: []string{"ops"}, Serial: serial,
			ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Minute).Unix()),
			Permissions: ssh.Permissions{Extensions: ext}}
	}
	node := func(id, env string) *Access {
		a := NewAccess(AccessConfig{NodeName: "web-" + id, NodeID: id, Labels: func() map[string]string { return map[string]string{"env": env} }})
		a.Confirm()
		a.Replace(roles, nil)
		return a
	}
	prod, prod2, dev := node("p1", "prod"), node("p2", "prod"), node("d1", "dev")
	authz := func(a *Access, c *ssh.Certificate) (*Permissions, error) {
		return a.Authorize(context.Background(), AuthzRequest{Cert: c, Login: "ops"})
	}

	// A certificate from login: refused on a session-MFA node, with how to
	// comply; fine elsewhere.
	if _, err := authz(prod, cert("")); err == nil || !strings.Contains(err.Error(), "warden ssh") {
		t.Fatalf("login certificate on a session-MFA node: %v", err)
	}
	if _, err := authz(dev, cert("")); err != nil {
		t.Fatalf("login certificate on a dev node: %v", err)
	}

	// A per-session certificate for p1: once, there only.
	one := cert(`{"nodes":["p1"],"max_sessions":1}`)
	p, err := authz(prod, one)
	if err != nil {
		t.Fatalf("per-session certificate: %v", err)
	}
	if !p.KeepAfterCertExpiry || p.Expires.Before(time.Now().Add(time.Hour)) {
		t.Fatalf("the session would end with its one-minute certificate: %+v", p)
	}
	// It ends no later than the login certificate would have.
	until := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	p, err = authz(prod, cert(fmt.Sprintf(`{"nodes":["p1"],"max_sessions":1,"until":%d}`, until.Unix())))
	if err != nil || !p.Expires.Equal(until) {
		t.Fatalf("a session past the login certificate's expiry: %+v %v", p, err)
	}
	if _, err := authz(prod, one); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("per-session certificate reused: %v", err)
	}
	if _, err := authz(prod2, cert(`{"nodes":["p1"],"max_sessions":1}`)); err == nil || !strings.Contains(err.Error(), "not for node") {
		t.Fatalf("per-session certificate on another node: %v", err)
	}
	if _, err := authz(dev, cert(`{"nodes":["p1"],"max_sessions":1}`)); err == nil {
		t.Fatal("per-session certificate of p1 used on a dev node")
	}

	// A batch: two nodes, two sessions. Each node bounds its own count;
	// the proxy counts them all (auth.SpendSessionCert).
	batch := cert(`{"nodes":["p1","p2"],"max_sessions":2}`)
	for _, a := range []*Access{prod, prod2, prod} {
		if _, err := authz(a, batch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := authz(prod, batch); err == nil {
		t.Fatal("batch certificate used beyond its sessions")
	}

	// The cluster's auth.require_session_mfa (from the feed's snapshot):
	// every node asks.
	dev.SetRequireSessionMFA(true)
	if _, err := authz(dev, cert("")); err == nil {
		t.Fatal("login certificate with session MFA required cluster-wide")
	}
}
