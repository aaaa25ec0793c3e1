//go:build integration

package clustertest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/client/sshclient"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/tunnel"
)

const sessionMFARole = `
kind: role
metadata: {name: prod}
spec:
  options: {require_session_mfa: true}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`

// sshOnPTY runs the real OpenSSH client on a new pseudo-terminal (its
// controlling terminal, so the ProxyCommand's /dev/tty is it), answers
// the MFA prompt with code, and returns the exit status and what the
// terminal showed.
func sshOnPTY(t *testing.T, code string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("ssh", args...)
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out syncbuf.Buffer
	copied := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				close(copied)
				return
			}
		}
	}()
	testkit.WaitFor(t, "the MFA prompt on the terminal", func() bool { return strings.Contains(out.String(), "code from your authenticator") }, &out)
	if _, err := ptmx.Write([]byte(code + "\n")); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	<-copied
	status := 0
	if ee, ok := err.(*exec.ExitError); ok {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return status, out.String()
}

// sessionCertSigner is the profile key with a per-session certificate
// that `warden proxy ssh` left for ssh.
func sessionCertSigner(t *testing.T, p *client.Profile, certPath string) ssh.Signer {
	t.Helper()
	keyPEM, err := os.ReadFile(p.KeyPath())
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(text)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewCertSigner(pub.(*ssh.Certificate), key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSessionMFAOpenSSH: a role with require_session_mfa. warden ssh with a
// scripted code connects; the real OpenSSH client through the ProxyCommand
// of `warden config ssh` asks on its terminal and connects; without a
// terminal or a code it fails saying how to comply; a certificate from
// login is refused by the proxy (ssh -J) with that reason; a per-session
// certificate is refused a second time, and on another node.
func TestSessionMFAOpenSSH(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "node1"})
	c.StartNode("node2", nil)
	c.WaitForNodes(2)
	c.ApplyRoles(sessionMFARole)
	u := c.AddUser("alice", []string{"prod"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)

	// warden ssh, the code from standard input's first line; the rest is
	// the remote command's.
	code := u.NextOTP(t)
	r := c.Warden(home, strings.NewReader(code+"\nvia-warden\n"), "ssh", "--mfa-code-file", "-", osLogin+"@node1", "cat")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "via-warden" {
		t.Fatalf("warden ssh with a per-session MFA check: %s", r)
	}
	// The same code again, from a file: the device's replay guard refuses it.
	codeFile := filepath.Join(t.TempDir(), "code")
	if err := os.WriteFile(codeFile, []byte(code+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = c.Warden(home, nil, "ssh", "--mfa-code-file", codeFile, osLogin+"@node1", "true")
	if r.Code == 0 || !strings.Contains(r.Stderr, "already used") {
		t.Fatalf("a replayed TOTP code: %s", r)
	}

	// The proxy's refusal of a login certificate is machine-readable, on
	// both of its paths (a data connection's dial reply, and the
	// disconnect inside a direct-tcpip channel): `warden ssh` connects
	// first and makes the check only on it. A refusal for another reason
	// is not tagged.
	ctx := context.Background()
	lp, err := client.LoadProfile(home)
	if err != nil {
		t.Fatal(err)
	}
	loginSigner, _, err := lp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	cas, err := lp.HostCAs()
	if err != nil {
		t.Fatal(err)
	}
	lpc, err := sshclient.Dial(ctx, sshclient.Config{User: osLogin, Addr: c.ProxyAddr(), Signer: loginSigner, HostCAs: cas,
		HostName: "127.0.0.1", Timeout: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer lpc.Close()
	if _, err := tunnel.DialData(ctx, lpc, c.ProxyAddr(), "node1"); !tunnel.HasCode(err, tunnel.CodeSessionMFA) {
		t.Fatalf("a login certificate's data connection: %v", err)
	}
	ch, err := lpc.Dial("tcp", "node1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = sshclient.Dial(ctx, sshclient.Config{User: osLogin, Addr: "node1:0", Signer: loginSigner, HostCAs: cas, Timeout: 15 * time.Second,
		Dial: func(context.Context, string, string) (net.Conn, error) { return ch, nil }})
	if !tunnel.HasCode(err, tunnel.CodeSessionMFA) {
		t.Fatalf("a login certificate through a channel: %v", err)
	}
	if _, err := tunnel.DialData(ctx, lpc, c.ProxyAddr(), "no-such-node"); err == nil || tunnel.HasCode(err, tunnel.CodeSessionMFA) {
		t.Fatalf("an unknown node: %v", err)
	}

	// No terminal (setsid: no controlling terminal) and no code: how to comply.
	r = Run(t, nil, "setsid", append([]string{"-w", "ssh"}, sshArgs(cfg, osLogin+"@node1", "true")...)...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "WARDEN_MFA_CODE") {
		t.Fatalf("ssh without a terminal: %s", r)
	}
	// ssh -J with the certificate from login: the proxy refuses.
	r = Run(t, nil, "ssh", sshArgs(cfg, "-J", osLogin+"@"+c.ProxyAddr(), osLogin+"@node1", "true")...)
	if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "requires an MFA check for each session") {
		t.Fatalf("ssh -J with a certificate from login: %s", r)
	}

	// The real OpenSSH client on a terminal: the ProxyCommand asks.
	status, out := sshOnPTY(t, u.NextOTP(t), sshArgs(cfg, osLogin+"@node1", "echo via-openssh")...)
	if status != 0 || !strings.Contains(out, "via-openssh") {
		t.Fatalf("ssh through the ProxyCommand on a terminal: status %d\n%s", status, out)
	}

	// The certificate the ProxyCommand left: used once already.
	p, err := client.LoadProfile(home)
	if err != nil {
		t.Fatal(err)
	}
	signer := sessionCertSigner(t, p, p.Path(filepath.Join("session-certs", osLogin+"@node1-cert.pub")))
	pc, err := sshclient.Dial(ctx, sshclient.Config{User: osLogin, Addr: c.ProxyAddr(), Signer: signer, HostCAs: cas,
		HostName: "127.0.0.1", Timeout: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := tunnel.DialData(ctx, pc, c.ProxyAddr(), "node1"); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("a per-session certificate used again: %v", err)
	}
	if _, err := tunnel.DialData(ctx, pc, c.ProxyAddr(), "node2"); err == nil || !strings.Contains(err.Error(), "not for node") {
		t.Fatalf("a per-session certificate on another node: %v", err)
	}

	// Audited: the check with the device, and the certificate.
	evs, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.MFAVerify, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for _, ev := range evs {
		if ev.Success && ev.Fields["purpose"] == "session" && ev.Fields["mfa_device"] != "" {
			ok++
		}
	}
	if ok != 2 {
		t.Fatalf("%d audited per-session MFA checks, want 2", ok)
	}
	// And the sessions they opened (warden ssh, OpenSSH through the
	// ProxyCommand): session.start says the check was made, and with
	// which device.
	var device string
	for _, ev := range evs {
		if ev.Success && ev.Fields["purpose"] == "session" {
			device, _ = ev.Fields["mfa_device"].(string)
		}
	}
	testkit.WaitFor(t, "two session.start events with mfa_verified", func() bool {
		starts, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.SessionStart, User: "alice"})
		if err != nil {
			return false
		}
		n := 0
		for _, ev := range starts {
			if ev.Fields["mfa_verified"] == true && ev.Fields["mfa_device"] == device {
				n++
			}
		}
		return n == 2 && len(starts) == 2
	})
}

// TestSessionMFAAnsibleBatch: a role allows one MFA check to cover a
// bounded batch (session_mfa_window, session_mfa_max_sessions). One check
// with `warden mfa session` for two nodes, then an Ansible run to both
// through the ProxyCommand of `warden config ssh`, then scp and rsync,
// asking nothing more; a node outside the batch is still refused.
func TestSessionMFAAnsibleBatch(t *testing.T) {
	requireOpenSSH(t)
	if _, err := exec.LookPath("ansible"); err != nil {
		t.Fatalf("ansible is required (apt-get install ansible): %v", err)
	}
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "node1"})
	c.StartNode("node2", nil)
	c.StartNode("node3", nil)
	c.WaitForNodes(3)
	c.ApplyRoles(`
kind: role
metadata: {name: prod}
spec:
  options: {require_session_mfa: true, session_mfa_window: 5m, session_mfa_max_sessions: 6}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`)
	u := c.AddUser("alice", []string{"prod"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	codeFile := filepath.Join(t.TempDir(), "code")
	if err := os.WriteFile(codeFile, []byte(u.NextOTP(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.Warden(home, nil, "mfa", "session", "--login", osLogin, "--sessions", "6", "--mfa-code-file", codeFile, "node1", "node2")
	if r.Code != 0 || !strings.Contains(r.Stdout, "6 sessions") {
		t.Fatalf("warden mfa session: %s", r)
	}
	tmp := t.TempDir()
	cmd := exec.Command("setsid", "-w", "ansible", "all", "-i", "node1,node2,", "-u", osLogin, "-m", "raw", "-a", "echo ansible-ok-$(hostname)")
	cmd.Env = append(os.Environ(), "ANSIBLE_SSH_ARGS=-F "+cfg+" -o ControlMaster=no",
		"ANSIBLE_SSH_CONTROL_PATH_DIR="+filepath.Join(tmp, "cp"), "ANSIBLE_LOCAL_TEMP="+filepath.Join(tmp, "local"),
		"ANSIBLE_HOME="+filepath.Join(tmp, "home"), "ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_NOCOLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), "ansible-ok-") != 2 {
		t.Fatalf("ansible to two nodes after one MFA check: %v\n%s", err, out)
	}
	// scp and rsync through the same ProxyCommand, within the batch.
	src := filepath.Join(tmp, "payload")
	if err := os.WriteFile(src, []byte("per-session payload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst, err := os.MkdirTemp("", "warden-session-mfa-") // the node's login can reach it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dst) })
	if err := os.Chmod(dst, 0o777); err != nil {
		t.Fatal(err)
	}
	r = Run(t, nil, "setsid", append([]string{"-w", "scp"}, sshArgs(cfg, src, osLogin+"@node1:"+filepath.Join(dst, "via-scp"))...)...)
	if r.Code != 0 {
		t.Fatalf("scp within the batch: %s", r)
	}
	r = Run(t, nil, "setsid", "-w", "rsync", "-e", "ssh -F "+cfg+" -o BatchMode=yes", src, osLogin+"@node2:"+filepath.Join(dst, "via-rsync"))
	if r.Code != 0 {
		t.Fatalf("rsync within the batch: %s", r)
	}
	for _, name := range []string{"via-scp", "via-rsync"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != "per-session payload\n" {
			t.Fatalf("%s: %q %v", name, b, err)
		}
	}
	// node3 is outside the batch: without a terminal or a code, refused.
	r = Run(t, nil, "setsid", append([]string{"-w", "ssh"}, sshArgs(cfg, osLogin+"@node3", "true")...)...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "WARDEN_MFA_CODE") {
		t.Fatalf("ssh to a node outside the batch: %s", r)
	}
}

// TestSessionMFAClusterWideAtProxy: auth.require_session_mfa, with roles
// that do not ask for it: the proxy refuses a login certificate (ssh -J),
// with how to comply, and so does the node on its own port.
func TestSessionMFAClusterWideAtProxy(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "node1", NodeListen: "127.0.0.1:0", Auth: service.AuthConfig{RequireSessionMFA: true}})
	home := c.Login(c.AddUser("alice", []string{"access"}, []string{osLogin}))
	cfg := c.SSHConfig(home)
	r := Run(t, nil, "ssh", sshArgs(cfg, "-J", osLogin+"@"+c.ProxyAddr(), osLogin+"@node1", "echo", "in")...)
	if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "requires an MFA check for each session") {
		t.Fatalf("ssh -J with a login certificate, session MFA cluster-wide: %s", r)
	}
	// The node itself, on its own port (no proxy): the setting reached it
	// with the feed's snapshot.
	n := c.Proc.Node()
	r = Run(t, nil, "ssh", directArgs(home, n.Addr(), n.ID(), osLogin+"@node1", "echo", "in")...)
	if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "requires an MFA check for each session") {
		t.Fatalf("ssh to the node's own port with a login certificate, session MFA cluster-wide: %s", r)
	}
}
