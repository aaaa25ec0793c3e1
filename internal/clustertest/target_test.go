//go:build integration

package clustertest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/audit"
)

// TestTargetByLabel: one target grammar for warden ssh, warden scp and
// ssh -J: a label that names exactly one node reaches it every way.
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

	// warden scp up and down by label; the node's audit events show the
	// copy reached web1.
	data := []byte("copied by label\n")
	local := filepath.Join(t.TempDir(), "up")
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	remote := "/tmp/warden-label-" + randHex(t)
	t.Cleanup(func() { os.Remove(remote) })
	if r := c.Warden(home, nil, "scp", "-q", local, osLogin+"@env=prod:"+remote); r.Code != 0 {
		t.Fatalf("warden scp to %s@env=prod: %s", osLogin, r)
	}
	back := filepath.Join(t.TempDir(), "back")
	if r := c.Warden(home, nil, "scp", "-q", osLogin+"@env=prod:"+remote, back); r.Code != 0 {
		t.Fatalf("warden scp from %s@env=prod: %s", osLogin, r)
	}
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied back %q, %v; want %q", got, err, data)
	}
	// OpenSSH's sftp by label, through the proxy as a jump host (named
	// for its host key, as ssh -J above).
	batch := "get " + remote + " " + back + ".sftp\n"
	if r := Run(t, strings.NewReader(batch), "sftp", sshArgs(jumpConfig(t, c, home), "-o", "HostKeyAlias=web1", "-J", "wjump", "-b", "-", osLogin+"@env=prod")...); r.Code != 0 {
		t.Fatalf("sftp -J wjump %s@env=prod: %s", osLogin, r)
	}
	if got, err := os.ReadFile(back + ".sftp"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("sftp by label got %q, %v; want %q", got, err, data)
	}
	waitAudit(t, c, audit.SFTP, remote)
	evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.SFTP, Text: remote})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Node != "web1" {
			t.Fatalf("scp to env=prod reached node %q: %+v", ev.Node, ev)
		}
	}
	if r := c.Warden(home, nil, "scp", "-q", local, osLogin+"@env=staging:"+remote); r.Code == 0 || !strings.Contains(r.Stderr, "not found") {
		t.Fatalf("warden scp to an unknown label: %s", r)
	}
}
