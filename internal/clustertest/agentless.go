package clustertest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/cli"
	"github.com/warden-sh/warden/internal/krl"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// Agentless is a real OpenSSH sshd set up as docs/agentless.md says, with
// the CLI: it trusts the cluster's user CA (warden ca export), presents a
// host certificate (warden sign --host), and reads the KRL warden krl sync
// keeps current (RevokedKeys).
type Agentless struct {
	SSHD *testkit.SSHD
	// KRL is the path of sshd's RevokedKeys file; Identity the KRL
	// identity of warden sign --krl-identity.
	KRL, Identity string
	// Sync is the KRL sync's log.
	Sync *syncbuf.Buffer
}

// StartAgentless registers an agentless server called name and starts
// its sshd on loopback and its KRL sync, until the test ends.
func StartAgentless(t testing.TB, c *Cluster, name string, labels string) *Agentless {
	t.Helper()
	return StartAgentlessWith(t, c, name, labels, testkit.SSHDOptions{})
}

// StartAgentlessWith is StartAgentless with sshd's namespace and address
// (o.NetNS, o.Listen) chosen by the caller.
func StartAgentlessWith(t testing.TB, c *Cluster, name string, labels string, o testkit.SSHDOptions) *Agentless {
	t.Helper()
	admin := t.TempDir()
	dir := t.TempDir()
	// Registered first (an address to be corrected once sshd has its
	// port): the host certificate then comes with the KRL identity.
	if r := c.Warden(admin, nil, "nodes", "add", name, "--addr", "127.0.0.1:1", "--labels", labels, "--agentless"); r.Code != 0 {
		t.Fatalf("nodes add: %s", r)
	}
	r := c.Warden(admin, nil, "ca", "export", "--type", "user")
	userCA, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.Stdout))
	if r.Code != 0 || err != nil {
		t.Fatalf("ca export: %s (%v)", r, err)
	}
	a := &Agentless{KRL: filepath.Join(dir, "warden.krl"), Sync: &syncbuf.Buffer{}}
	if r := c.Warden(admin, nil, "krl", "-o", a.KRL); r.Code != 0 {
		t.Fatalf("warden krl: %s", r)
	}
	identity := filepath.Join(dir, "warden-krl.json")
	a.Identity = identity
	principal := "127.0.0.1"
	if o.Listen != "" {
		principal, _, _ = strings.Cut(o.Listen, ":")
	}
	a.SSHD = testkit.StartSSHD(t, testkit.SSHDOptions{
		NetNS:   o.NetNS,
		Listen:  o.Listen,
		UserCAs: []ssh.PublicKey{userCA},
		HostCert: func(pub ssh.PublicKey) (*ssh.Certificate, error) {
			pubFile := filepath.Join(dir, "host.pub")
			if err := os.WriteFile(pubFile, ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
				return nil, err
			}
			certFile := filepath.Join(dir, "host-cert.pub")
			r := c.Warden(admin, nil, "sign", "--host", name, "--principals", principal, "--pubkey", pubFile, "-o", certFile,
				"--krl-identity", identity)
			if r.Code != 0 || !strings.Contains(r.Stderr, "renew it before then") {
				t.Fatalf("warden sign: %s", r)
			}
			b, err := os.ReadFile(certFile)
			if err != nil {
				return nil, err
			}
			k, _, _, _, err := ssh.ParseAuthorizedKey(b)
			if err != nil {
				return nil, err
			}
			return k.(*ssh.Certificate), nil
		},
		Config: []string{"RevokedKeys " + a.KRL, "LogLevel VERBOSE"},
	})
	if r := c.Warden(admin, nil, "nodes", "add", name, "--addr", a.SSHD.Addr, "--labels", labels, "--agentless"); r.Code != 0 {
		t.Fatalf("nodes add: %s", r)
	}
	// The server's KRL sync, as warden start --services krl runs it.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- cli.RunIO(ctx, []string{"--debug", "start", "--services", "krl", "--krl-identity", identity, "--host-key", a.SSHD.HostKey,
			"--krl-file", a.KRL}, &cli.IO{In: strings.NewReader(""), Out: a.Sync, Err: a.Sync})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("krl sync log:\n%s", a.Sync.String())
		}
	})
	testkit.WaitFor(t, "the KRL sync to fetch the KRL", func() bool { return strings.Contains(a.Sync.String(), "KRL updated") })
	return a
}

// Revoked reports whether sshd's current KRL file revokes cert.
func (a *Agentless) Revoked(t testing.TB, cert *ssh.Certificate) bool {
	b, err := os.ReadFile(a.KRL)
	if err != nil {
		t.Fatal(err)
	}
	k, err := krl.Parse(b)
	if err != nil {
		t.Fatalf("sshd's KRL file: %v", err)
	}
	return k.Revoked(cert)
}
