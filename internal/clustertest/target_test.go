package clustertest

import (
	"strings"
	"testing"
)

// TestTargetByLabel: one target grammar for warden ssh and ssh -J: a label
// that names exactly one node reaches it both ways.
func TestTargetByLabel(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NoNode: true})
	c.StartNode("web1", map[string]string{"env": "prod"})
	c.StartNode("dev1", map[string]string{"env": "dev"})
	c.WaitForNodes(2)
	u := c.AddUser("alice", []string{"access"}, []string{osLogin})
	home := c.Login(u)

	r := c.Warden(home, nil, "ssh", osLogin+"@env=prod", "echo by-label")
	if r.Code != 0 || !strings.Contains(r.Stdout, "by-label") {
		t.Fatalf("warden ssh %s@env=prod: %s", osLogin, r)
	}
	// OpenSSH checks the node's host certificate against the name it was
	// given: a label is not one of the node's principals, so ssh -J by label
	// names the node the host key is for.
	r = Run(t, nil, "ssh", sshArgs(jumpConfig(t, c, home), "-o", "HostKeyAlias=web1", "-J", "wjump", osLogin+"@env=prod", "echo by-label")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "by-label") {
		t.Fatalf("ssh -J wjump %s@env=prod: %s", osLogin, r)
	}
	r = c.Warden(home, nil, "ssh", osLogin+"@env=staging", "true")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not found") {
		t.Fatalf("warden ssh to an unknown label: %s", r)
	}
}
