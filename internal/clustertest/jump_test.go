//go:build integration

package clustertest

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestSSHJumpWithGeneratedConfig: with the file `warden config ssh` writes,
// the README's `ssh -J LOGIN@PROXY:PORT LOGIN@NODE` works with the real
// OpenSSH client (the proxy's host certificate checked against the host CA,
// the Warden certificate offered), and ssh to another port of the proxy's
// host is left alone.
func TestSSHJumpWithGeneratedConfig(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "node1"})
	home := c.Login(c.AddUser("alice", []string{"access"}, []string{osLogin}))
	cfg := c.SSHConfig(home)

	r := Run(t, nil, "ssh", "-F", cfg, "-o", "BatchMode=yes", "-J", osLogin+"@"+c.ProxyAddr(), osLogin+"@node1", "echo via-jump")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "via-jump" {
		t.Fatalf("ssh -J with the generated config: %s", r)
	}
	// The proxy's block applies to its port only.
	host, port, _ := net.SplitHostPort(c.ProxyAddr())
	key := filepath.Join(home, "key")
	for _, tc := range []struct {
		port string
		want bool
	}{{port, true}, {"22", false}} {
		r := Run(t, nil, "ssh", "-G", "-F", cfg, "-p", tc.port, host)
		if r.Code != 0 {
			t.Fatalf("ssh -G: %s", r)
		}
		if got := strings.Contains(r.Stdout, "identityfile "+key); got != tc.want {
			t.Errorf("port %s: the Warden key is offered: %v, want %v:\n%s", tc.port, got, tc.want, r.Stdout)
		}
	}
}
