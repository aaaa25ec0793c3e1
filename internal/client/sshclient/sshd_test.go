package sshclient

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
)

const sshdPath = "/usr/sbin/sshd"

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

type sshdServer struct {
	addr   string
	stderr *syncbuf.Buffer
}

// startSSHD runs /usr/sbin/sshd in the foreground on a free loopback port
// with a config in a temp dir, and stops it when the test ends.
func startSSHD(t *testing.T, o sshdOptions) *sshdServer {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Fatalf("%s not found: these tests need the real OpenSSH server; install it with `apt-get install -y openssh-server` (%v)", sshdPath, err)
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("create /run/sshd: %v", err)
	}
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}

	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	hostKeyPath := write("host_ed25519", string(pem.EncodeToMemory(block)), 0o600)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	cfg := []string{
		fmt.Sprintf("ListenAddress 127.0.0.1:%d", port),
		"HostKey " + hostKeyPath,
		"TrustedUserCAKeys " + write("user_ca.pub", string(ssh.MarshalAuthorizedKey(o.userCA.pub())), 0o644),
		"AuthorizedKeysFile none",
		"AuthorizedPrincipalsFile none",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"Subsystem sftp internal-sftp",
		"AcceptEnv WARDEN_TEST_*",
		"LogLevel VERBOSE",
		"MaxSessions 64",
		// The test login may be root, whose shell rc files on a developer
		// machine (pyenv and the like) write to stderr: give sessions a
		// clean HOME.
		"SetEnv HOME=" + dir,
	}
	if o.hostCA != nil {
		cert := o.hostCA.sign(t, hostSigner.PublicKey(), ssh.HostCert, o.hostNames, time.Hour)
		cfg = append(cfg, "HostCertificate "+write("host_ed25519-cert.pub", string(ssh.MarshalAuthorizedKey(cert)), 0o644))
	}
	if o.banner != "" {
		cfg = append(cfg, "Banner "+write("banner", o.banner+"\n", 0o644))
	}
	cfgPath := write("sshd_config", strings.Join(cfg, "\n")+"\n", 0o644)

	srv := &sshdServer{addr: fmt.Sprintf("127.0.0.1:%d", port), stderr: &syncbuf.Buffer{}}
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = srv.stderr, srv.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sshd log:\n%s", srv.stderr.String())
		}
	})

	deadline := patience.Deadline(t)
	for {
		select {
		case <-exited:
			t.Fatalf("sshd exited at start:\n%s", srv.stderr.String())
		default:
		}
		c, err := net.DialTimeout("tcp", srv.addr, time.Second)
		if err == nil {
			c.Close()
			return srv
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s: %v\n%s", srv.addr, err, srv.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
	srv            *sshdServer
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
		Addr:     c.srv.addr,
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
		t.Fatalf("Dial: %v\nsshd log:\n%s", err, c.srv.stderr.String())
	}
	t.Cleanup(func() { client.Close() })
	return client
}
