package service

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

// TestSplitProxyRenewsItsIdentity: auth alone (services: [auth]) and a
// proxy alone (services: [proxy]) in one test process. The proxy joins
// with a proxy token and its CA pin; with short certificates it renews
// its identity while it runs, and the SSH host certificate it presents
// changes with it (a proxy that kept its first one would be refused by
// every client once it expired). A wrong pin refuses to join.
func TestSplitProxyRenewsItsIdentity(t *testing.T) {
	old := identityCheckEvery
	identityCheckEvery = 100 * time.Millisecond
	t.Cleanup(func() { identityCheckEvery = old })
	ctx := context.Background()
	a, err := Start(ctx, &Config{DataDir: t.TempDir(), Services: []string{Auth}, Auth: AuthConfig{Listen: "127.0.0.1:0", NodeCertTTL: 3 * time.Second},
		Proxy: ProxyConfig{MetricsAddr: MetricsOff}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	tok, err := a.Auth().CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: wire.TokenTypeProxy, TTL: time.Hour, Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	pin := api.Fingerprint(a.Auth().Authority().TLSCACert().Raw)

	bad := &Config{DataDir: t.TempDir(), Services: []string{Proxy}, Proxy: ProxyConfig{Listen: "127.0.0.1:0", MetricsAddr: MetricsOff,
		AuthServers: []string{a.ProxyAddr()}, Token: tok.Token, CAPin: "sha256:00"}}
	if p, err := Start(ctx, bad, nil); err == nil {
		p.Close()
		t.Fatal("a proxy joined with the wrong CA pin")
	}

	dir := t.TempDir()
	p, err := Start(ctx, &Config{DataDir: dir, Services: []string{Proxy}, Proxy: ProxyConfig{Listen: "127.0.0.1:0", MetricsAddr: MetricsOff,
		AuthServers: []string{a.ProxyAddr()}, Token: tok.Token, CAPin: pin}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	hostCert := func() *ssh.Certificate {
		var got *ssh.Certificate
		cfg := &ssh.ClientConfig{User: "probe", Timeout: 5 * time.Second,
			HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
				got, _ = key.(*ssh.Certificate)
				return nil
			}}
		c, err := ssh.Dial("tcp", p.ProxyAddr(), cfg)
		if err == nil {
			c.Close()
		}
		if got == nil {
			t.Fatalf("no host certificate from the proxy: %v", err)
		}
		return got
	}
	first := hostCert()
	if first.KeyId != "proxy" || first.CertType != ssh.HostCert {
		t.Fatalf("proxy host certificate: %+v", first)
	}
	id, err := idfile.Read(filepath.Join(dir, "proxy-identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the proxy to renew its identity", func() bool {
		again, err := idfile.Read(filepath.Join(dir, "proxy-identity.json"))
		return err == nil && again.TLSCert != id.TLSCert && again.TLSServerCert != id.TLSServerCert
	})
	testkit.WaitFor(t, "the proxy to present its renewed host certificate", func() bool {
		return hostCert().Serial != first.Serial
	})
	if _, err := os.Stat(filepath.Join(dir, "proxy-identity.json")); err != nil {
		t.Fatal(err)
	}
}

// TestSplitProxyViewFailsClosed: the decisions a proxy running apart
// makes from its watched view of auth. Before the first view every
// subject is refused; a lock in the view refuses its subject, and its
// removal lets it back; a user's nodes are those their current roles
// allow, none for a role the view does not know.
func TestSplitProxyViewFailsClosed(t *testing.T) {
	s := &splitProxy{locks: lock.NewSet()}
	alice := lock.Subject{User: "alice", Roles: []string{"dev"}, Issued: time.Now()}
	if err := s.CheckLock(alice); err == nil {
		t.Fatal("a subject was let in before the proxy had any view of the locks")
	}
	roles, err := policy.ParseRoles([]byte("kind: role\nmetadata: {name: dev}\nspec: {allow: {logins: [dev], node_labels: {env: dev}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s.apply(api.WatchEvent{Type: "snapshot", Roles: roles})
	if err := s.CheckLock(alice); err != nil {
		t.Fatalf("no lock, yet refused: %v", err)
	}
	s.apply(api.WatchEvent{Type: "put", Kind: "lock", Lock: &lock.Lock{ID: "l1", Target: lock.Target{User: "alice"}, Message: "stop"}})
	if err := s.CheckLock(alice); err == nil || !strings.Contains(err.Error(), "stop") {
		t.Fatalf("a locked user: %v", err)
	}
	s.apply(api.WatchEvent{Type: "delete", Kind: "lock", Name: "l1"})
	if err := s.CheckLock(alice); err != nil {
		t.Fatalf("after the unlock: %v", err)
	}
	if got := s.rolesOf([]string{"dev", "unknown"}); len(got) != 1 || got[0].Metadata.Name != "dev" {
		t.Fatalf("roles of the view: %+v", got)
	}
	s.apply(api.WatchEvent{Type: "delete", Kind: "role", Name: "dev"})
	if got := s.rolesOf([]string{"dev"}); len(got) != 0 {
		t.Fatalf("a deleted role is still in the view: %+v", got)
	}
}
