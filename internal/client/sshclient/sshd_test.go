//go:build integration

package sshclient

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os/user"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/testkit"
)

// testCA is an ed25519 SSH certificate authority for tests.
type testCA struct {
	signer ssh.Signer
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{signer: s}
}

func (ca *testCA) pub() ssh.PublicKey { return ca.signer.PublicKey() }

// sign issues a certificate for key, valid from a minute ago for ttl.
func (ca *testCA) sign(t *testing.T, key ssh.PublicKey, certType uint32, principals []string, ttl time.Duration) *ssh.Certificate {
	t.Helper()
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          uint64(now.UnixNano()),
		CertType:        certType,
		KeyId:           "test",
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(now.Add(ttl).Unix()),
	}
	if certType == ssh.UserCert {
		cert.Permissions.Extensions = map[string]string{
			"permit-pty":              "",
			"permit-port-forwarding":  "",
			"permit-agent-forwarding": "",
		}
	}
	if err := cert.SignCert(rand.Reader, ca.signer); err != nil {
		t.Fatal(err)
	}
	return cert
}

// userSigner makes a fresh user key with a certificate from ca for login.
func (ca *testCA) userSigner(t *testing.T, login string) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(ca.sign(t, s.PublicKey(), ssh.UserCert, []string{login}, time.Hour), s)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// sshdOptions describe how to set up one real OpenSSH server.
type sshdOptions struct {
	userCA    *testCA
	hostCA    *testCA  // nil: plain host key, no certificate
	hostNames []string // principals of the host certificate
	banner    string   // sent before authentication when set
}

// startSSHD runs a real OpenSSH server (testkit.StartSSHD) with o's CAs.
// Its log is verbose, sessions get a clean HOME (the test login may be
// root, whose shell rc files on a developer machine, pyenv and the like,
// write to stderr), and WARDEN_TEST_* variables pass through.
func startSSHD(t *testing.T, o sshdOptions) *testkit.SSHD {
	t.Helper()
	opts := testkit.SSHDOptions{
		UserCAs: []ssh.PublicKey{o.userCA.pub()},
		Banner:  o.banner,
		Config:  []string{"LogLevel VERBOSE", "MaxSessions 64", "AcceptEnv WARDEN_TEST_*", "SetEnv HOME=" + t.TempDir()},
	}
	if o.hostCA != nil {
		opts.HostCert = func(key ssh.PublicKey) (*ssh.Certificate, error) {
			return o.hostCA.sign(t, key, ssh.HostCert, o.hostNames, time.Hour), nil
		}
	}
	return testkit.StartSSHD(t, opts)
}

func currentLogin(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// cluster is a user CA, a host CA and an sshd trusting them.
type cluster struct {
	userCA, hostCA *testCA
	srv            *testkit.SSHD
	login          string
}

const testHostName = "node1.example.test"

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{userCA: newTestCA(t), hostCA: newTestCA(t), login: currentLogin(t)}
	c.srv = startSSHD(t, sshdOptions{userCA: c.userCA, hostCA: c.hostCA, hostNames: []string{testHostName}})
	return c
}

func (c *cluster) config(t *testing.T) Config {
	return Config{
		User:     c.login,
		Addr:     c.srv.Addr,
		Signer:   c.userCA.userSigner(t, c.login),
		HostCAs:  []ssh.PublicKey{c.hostCA.pub()},
		HostName: testHostName,
		Timeout:  patience.Left(t),
	}
}

func (c *cluster) dial(t *testing.T) *ssh.Client {
	t.Helper()
	client, err := Dial(context.Background(), c.config(t))
	if err != nil {
		t.Fatalf("Dial: %v\nsshd log:\n%s", err, c.srv.Log.String())
	}
	t.Cleanup(func() { client.Close() })
	return client
}
