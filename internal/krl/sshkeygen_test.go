//go:build integration

package krl

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestSSHKeygenAgrees checks Warden's KRLs with OpenSSH's own reader
// (ssh-keygen -Q), and that Parse reads a KRL ssh-keygen -k wrote.
func TestSSHKeygenAgrees(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen not found (apt-get install -y openssh-client): %v", err)
	}
	dir := t.TempDir()
	ca, other := newCA(t), newCA(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k := &KRL{Version: 3, Generated: time.Now(), Comment: "warden test",
		Certs: []CertSection{{CA: ca.PublicKey(), Serials: []uint64{77, 5}, Ranges: [][2]uint64{{1000, 2000}}, KeyIDs: []string{"mallory"}}}}
	krlPath := write("krl", k.Marshal())
	for i, tc := range []struct {
		c       *ssh.Certificate
		revoked bool
	}{
		{cert(t, ca, "alice", 77), true},
		{cert(t, ca, "alice", 1500), true},
		{cert(t, ca, "mallory", 9), true},
		{cert(t, ca, "alice", 78), false},
		{cert(t, other, "mallory", 77), false},
	} {
		p := write("c"+string(rune('a'+i))+"-cert.pub", ssh.MarshalAuthorizedKey(tc.c))
		out, err := exec.Command(keygen, "-Q", "-f", krlPath, p).CombinedOutput()
		got := strings.Contains(string(out), "REVOKED")
		if got != tc.revoked || (err != nil) != tc.revoked {
			t.Errorf("ssh-keygen -Q on %s serial %d: %s (err %v), want revoked=%v", tc.c.KeyId, tc.c.Serial, out, err, tc.revoked)
		}
		if k.Revoked(tc.c) != tc.revoked {
			t.Errorf("Revoked(%s serial %d) disagrees with ssh-keygen", tc.c.KeyId, tc.c.Serial)
		}
	}

	// And the other way: a KRL from ssh-keygen -k (a specification file
	// with serials, a range and a key ID) parses with the same meaning.
	caPub := write("ca.pub", ssh.MarshalAuthorizedKey(ca.PublicKey()))
	spec := write("spec", []byte("serial: 5\nserial: 6\nserial: 7\nserial: 9\nserial: 100-200\nid: eve\n"))
	theirs := filepath.Join(dir, "theirs.krl")
	if out, err := exec.Command(keygen, "-k", "-f", theirs, "-s", caPub, spec).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -k: %v\n%s", err, out)
	}
	b, err := os.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(ssh-keygen's KRL): %v", err)
	}
	for _, tc := range []struct {
		id      string
		serial  uint64
		revoked bool
	}{{"x", 5, true}, {"x", 7, true}, {"x", 8, false}, {"x", 9, true}, {"x", 150, true}, {"x", 201, false}, {"eve", 1, true}} {
		if r := got.Revoked(cert(t, ca, tc.id, tc.serial)); r != tc.revoked {
			t.Errorf("ssh-keygen's KRL, %s serial %d: revoked=%v, want %v", tc.id, tc.serial, r, tc.revoked)
		}
	}
}
