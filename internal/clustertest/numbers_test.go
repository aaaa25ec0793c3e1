//go:build integration

package clustertest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/testkit"
)

// TestAuditKeepsCertificateSerials: a node's auth.attempt carries the
// refused certificate's serial, a 64-bit number. It crosses the node's
// journal, the API and the store, and reaches audit search (JSON and
// text) and audit tail exact, so it can be joined to cert.issued; the
// chain still verifies.
func TestAuditKeepsCertificateSerials(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NoNode: true})
	c.StartNode("web1", nil)
	c.WaitForNodes(1)
	home := c.Login(c.AddUser("alice", []string{"access"}, []string{osLogin}))
	key := filepath.Join(home, "key")

	// A certificate whose serial a float64 cannot hold (odd, above 2^53).
	var cert string
	var serial uint64
	for i := 0; i < 64 && (serial <= 1<<53 || serial%2 == 0); i++ {
		cert = issueWithAuthority(t, c, key, osLogin, time.Hour)
		data, err := os.ReadFile(cert)
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
		if err != nil {
			t.Fatal(err)
		}
		serial = pub.(*ssh.Certificate).Serial
	}
	if serial <= 1<<53 || serial%2 == 0 {
		t.Fatalf("no serial above 2^53 in 64 certificates: %d", serial)
	}
	// Refused by the node: the certificate does not allow root.
	if r := Run(t, nil, "ssh", c.bareSSHArgs(home, key, cert, "root@web1", "true")...); r.Code == 0 {
		t.Fatalf("root allowed: %s", r)
	}
	testkit.WaitFor(t, "auth.attempt", func() bool {
		evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.AuthAttempt, User: "developer"})
		return err == nil && len(evs) > 0
	})
	want := strconv.FormatUint(serial, 10)
	admin := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "search", "--type", audit.AuthAttempt, "-o", "json"}, `"cert_serial":` + want},
		{[]string{"audit", "search", "--type", audit.AuthAttempt}, "cert_serial=" + want},
		{[]string{"audit", "tail", "-o", "json"}, `"cert_serial":` + want},
		{[]string{"audit", "verify"}, "audit log intact"},
	} {
		r := c.Warden(admin, nil, tc.args...)
		if r.Code != 0 || !strings.Contains(r.Stdout, tc.want) {
			t.Errorf("%v: want %s in:\n%s", tc.args, tc.want, r)
		}
	}
}
