package testkit

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

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
)

// SSHDPath is OpenSSH's server (Debian: apt-get install openssh-server).
const SSHDPath = "/usr/sbin/sshd"

// SSHDOptions set up one stock OpenSSH server.
type SSHDOptions struct {
	// UserCAs are trusted for user certificates (TrustedUserCAKeys): the
	// only way to log in.
	UserCAs []ssh.PublicKey
	// HostCert certifies the server's fresh host key (HostCertificate);
	// nil serves the plain key.
	HostCert func(ssh.PublicKey) (*ssh.Certificate, error)
	// Banner is sent before authentication when set.
	Banner string
	// Config holds more sshd_config lines ("LogLevel VERBOSE"). They come
	// first: in sshd_config the first value given for an option wins.
	Config []string
	// NetNS runs sshd in that network namespace (ip netns exec); Listen
	// must then be an address of the namespace.
	NetNS string
	// Listen is the address sshd listens on (default: a free loopback
	// port).
	Listen string
}

// SSHD is a running sshd on a loopback port.
type SSHD struct {
	Addr string          // host:port it listens on
	Log  *syncbuf.Buffer // its log (-e), shown when the test fails
	// HostKey is the path of its host private key (OpenSSH PEM).
	HostKey string
	cmd     *exec.Cmd
}

// PID is the listener's process id.
func (s *SSHD) PID() int { return s.cmd.Process.Pid }

// StartSSHD runs SSHDPath in the foreground (-D -e) on a free loopback
// port, with a configuration in a temporary directory: certificate login
// only (no passwords, no authorized_keys, no PAM), an internal SFTP
// server, and otherwise OpenSSH's compiled-in defaults. It returns once
// the server answers with its SSH version, and stops it when the test
// ends. It needs root, as sshd does to switch to the login user and to
// allocate terminals.
func StartSSHD(tb testing.TB, o SSHDOptions) *SSHD {
	tb.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		tb.Fatalf("%s not found: this test needs the real OpenSSH server (apt-get install -y openssh-server): %v", SSHDPath, err)
	}
	if os.Geteuid() != 0 {
		tb.Fatalf("sshd needs root to switch users and allocate terminals (running as uid %d)", os.Geteuid())
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		tb.Fatalf("create /run/sshd: %v", err)
	}
	dir := tb.TempDir()
	write := func(name string, content []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, mode); err != nil {
			tb.Fatal(err)
		}
		return p
	}

	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		tb.Fatal(err)
	}
	hostKey := write("host_ed25519", pem.EncodeToMemory(block), 0o600)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		tb.Fatal(err)
	}
	var userCAs []byte
	for _, k := range o.UserCAs {
		userCAs = append(userCAs, ssh.MarshalAuthorizedKey(k)...)
	}

	addr := o.Listen
	if addr == "" {
		addr = fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
	}
	cfg := append(append([]string(nil), o.Config...),
		"ListenAddress "+addr,
		"HostKey "+hostKey,
		"TrustedUserCAKeys "+write("user_ca.pub", userCAs, 0o644),
		"AuthorizedKeysFile none",
		"AuthorizedPrincipalsFile none",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PidFile "+filepath.Join(dir, "sshd.pid"),
		"Subsystem sftp internal-sftp",
	)
	if o.HostCert != nil {
		cert, err := o.HostCert(hostSigner.PublicKey())
		if err != nil {
			tb.Fatalf("host certificate for sshd: %v", err)
		}
		cfg = append(cfg, "HostCertificate "+write("host_ed25519-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644))
	}
	if o.Banner != "" {
		cfg = append(cfg, "Banner "+write("banner", []byte(o.Banner+"\n"), 0o644))
	}
	cfgPath := write("sshd_config", []byte(strings.Join(cfg, "\n")+"\n"), 0o644)

	s := &SSHD{Addr: addr, Log: &syncbuf.Buffer{}, HostKey: hostKey}
	s.cmd = exec.Command(SSHDPath, "-D", "-e", "-f", cfgPath)
	if o.NetNS != "" {
		// ip netns exec enters the namespace and executes sshd in the same
		// process: signals reach sshd.
		s.cmd = exec.Command("ip", "netns", "exec", o.NetNS, SSHDPath, "-D", "-e", "-f", cfgPath)
	}
	s.cmd.Stdout, s.cmd.Stderr = s.Log, s.Log
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("start sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(exited)
	}()
	tb.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(patience.Left(tb)):
			_ = s.cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() {
			tb.Logf("sshd log:\n%s", s.Log.String())
		}
	})

	// Ready once it answers with its version (a failed start, such as a
	// bad configuration, ends the process with the reason in its log).
	err = patience.Retry(tb, func() error {
		select {
		case <-exited:
			tb.Fatalf("sshd exited at start:\n%s", s.Log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(patience.Left(tb)))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "SSH-") {
			return fmt.Errorf("sshd greeted with %q", line)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("sshd did not answer on %s: %v\n%s", addr, err, s.Log.String())
	}
	return s
}
