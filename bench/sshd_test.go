package bench

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/patience"
)

const sshdPath = "/usr/sbin/sshd"

// sshdAlias is the host name the baseline sshd's host certificate is for.
const sshdAlias = "sshd-bench"

// sshdServer is a stock OpenSSH sshd on a loopback port that trusts the
// Warden user CA and presents a host certificate from the Warden host CA,
// so the same Warden login and known_hosts work for it and for Warden.
type sshdServer struct {
	Addr string
	cmd  *exec.Cmd
}

// startSSHD starts the baseline sshd. Its configuration is OpenSSH's
// compiled-in defaults (UsePAM no, the default cipher and kex order) plus
// what certificate login needs; Warden does no PAM either.
func startSSHD(tb testing.TB, a *ca.Authority) *sshdServer {
	tb.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		tb.Fatalf("stock sshd is the baseline (apt-get install openssh-server): %v", err)
	}
	dir := tb.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		tb.Fatal(err)
	}
	hostKey := filepath.Join(dir, "host_ed25519")
	writeFile(tb, hostKey, pem.EncodeToMemory(block), 0o600)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	writeFile(tb, hostKey+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
	cert, err := a.IssueHost(ca.HostCertRequest{PublicKey: signer.PublicKey(), HostID: sshdAlias,
		Principals: []string{sshdAlias}, TTL: 24 * time.Hour})
	if err != nil {
		tb.Fatalf("host certificate for sshd: %v", err)
	}
	writeFile(tb, hostKey+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644)
	userCA := filepath.Join(dir, "user_ca.pub")
	writeFile(tb, userCA, ssh.MarshalAuthorizedKey(a.UserCAPublicKey()), 0o644)

	port := freePort(tb)
	cfg := filepath.Join(dir, "sshd_config")
	writeFile(tb, cfg, []byte(fmt.Sprintf(`# Warden benchmark baseline: stock sshd, certificate login only.
ListenAddress 127.0.0.1:%d
HostKey %s
HostCertificate %s-cert.pub
TrustedUserCAKeys %s
AuthorizedKeysFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
PidFile %s/sshd.pid
LogLevel ERROR
MaxStartups 200
MaxSessions 100
Subsystem sftp internal-sftp
`, port, hostKey, hostKey, userCA, dir)), 0o644)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(sshdPath, "-t", "-f", cfg).CombinedOutput(); err != nil {
		tb.Fatalf("sshd -t: %v: %s", err, out)
	}
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start sshd: %v", err)
	}
	s := &sshdServer{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	deadline := patience.Deadline(tb)
	for {
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			// Say hello back so sshd does not log the probe as an error.
			_, _ = c.Write([]byte("SSH-2.0-WardenBenchProbe\r\n"))
			time.Sleep(50 * time.Millisecond)
			c.Close()
			if strings.HasPrefix(line, "SSH-") {
				return s
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("sshd did not start on %s", s.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ensureBenchUser creates the benchmark's OS user (shell /bin/sh) and
// unlocks it without giving it a password ("*"): with UsePAM no, sshd
// refuses accounts whose password field is locked ("!"), as useradd leaves
// it; Warden does not look at that field.
func ensureBenchUser(tb testing.TB) {
	tb.Helper()
	clustertest.EnsureOSUser(tb, osUser)
	if out, err := exec.Command("usermod", "-p", "*", osUser).CombinedOutput(); err != nil {
		tb.Fatalf("usermod -p '*' %s: %v: %s", osUser, err, out)
	}
}

// PID is the listener's process id.
func (s *sshdServer) PID() int { return s.cmd.Process.Pid }

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func writeFile(tb testing.TB, path string, data []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		tb.Fatal(err)
	}
}

// sshIdentity is what the OpenSSH client logs in with.
type sshIdentity struct {
	Key, Cert, KnownHosts string
}

func profileIdentity(p *client.Profile) sshIdentity {
	return sshIdentity{Key: p.KeyPath(), Cert: p.CertPath(), KnownHosts: p.KnownHostsPath()}
}

// throwawayIdentity signs the profile's key with authority a (not the
// cluster's: a separate warden process keeps its CA keys to itself) and
// writes a known_hosts trusting a's host CA, for a baseline sshd started
// with a.
func throwawayIdentity(tb testing.TB, a *ca.Authority, p *client.Profile) sshIdentity {
	tb.Helper()
	signer, _, err := p.Signer()
	if err != nil {
		tb.Fatal(err)
	}
	pub := signer.PublicKey()
	if c, ok := pub.(*ssh.Certificate); ok {
		pub = c.Key
	}
	cert, err := a.IssueUser(ca.UserCertRequest{PublicKey: pub, Username: p.User,
		Principals: []string{osUser, ca.InternalPrincipalPrefix + p.User}, TTL: time.Hour, PermitPTY: true})
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	id := sshIdentity{Key: p.KeyPath(), Cert: filepath.Join(dir, "cert.pub"), KnownHosts: filepath.Join(dir, "known_hosts")}
	writeFile(tb, id.Cert, ssh.MarshalAuthorizedKey(cert), 0o600)
	writeFile(tb, id.KnownHosts, []byte("@cert-authority * "+string(ssh.MarshalAuthorizedKey(a.HostCAPublicKey()))), 0o600)
	return id
}

// sshHost is one Host block of the benchmark's ssh_config.
type sshHost struct {
	Alias, HostName string
	Port            int
	// HostKeyAlias is the name the host certificate is checked against.
	HostKeyAlias string
	ProxyJump    string
}

// writeSSHConfig writes an ssh_config in which every host uses the Warden
// profile's key, certificate and known_hosts (@cert-authority for the
// Warden host CA), with identical options for all paths. Ciphers, MACs and
// key exchange are left at OpenSSH's defaults.
func writeSSHConfig(tb testing.TB, id sshIdentity, hosts []sshHost) string {
	tb.Helper()
	var b strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&b, "Host %s\n", h.Alias)
		if h.HostName != "" {
			fmt.Fprintf(&b, "    HostName %s\n", h.HostName)
		}
		if h.Port != 0 {
			fmt.Fprintf(&b, "    Port %d\n", h.Port)
		}
		if h.HostKeyAlias != "" {
			fmt.Fprintf(&b, "    HostKeyAlias %s\n", h.HostKeyAlias)
		}
		if h.ProxyJump != "" {
			fmt.Fprintf(&b, "    ProxyJump %s\n", h.ProxyJump)
		}
	}
	fmt.Fprintf(&b, `Host *
    User %s
    IdentityFile %s
    CertificateFile %s
    IdentitiesOnly yes
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 20
    ControlMaster no
    ControlPath none
    LogLevel ERROR
`, osUser, id.Key, id.Cert, id.KnownHosts)
	path := filepath.Join(tb.TempDir(), "ssh_config")
	writeFile(tb, path, []byte(b.String()), 0o600)
	return path
}
