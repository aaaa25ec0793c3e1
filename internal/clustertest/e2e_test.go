//go:build integration

package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/cli"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/patience"
)

const osLogin = "wardendev"

func requireOpenSSH(t *testing.T) {
	t.Helper()
	for _, b := range []string{"ssh", "scp", "sftp"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is required for end-to-end tests (apt-get install openssh-client): %v", b, err)
		}
	}
}

func sshArgs(cfg string, extra ...string) []string {
	return append([]string{"-F", cfg, "-o", "BatchMode=yes"}, extra...)
}

// TestOpenSSHEndToEnd is SCENARIOS S1 steps 2, 4 and 5 driven by the real
// OpenSSH client against an in-process cluster.
func TestOpenSSHEndToEnd(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "node1", NodeLabels: map[string]string{"env": "dev"}})

	// Signup through the CLI with the command users add printed, scripted:
	// the token on the first line of stdin, the password on the next, then
	// the TOTP code, computed from the printed URL.
	res := c.Warden(t.TempDir(), nil, "users", "add", "developer", "--roles", "access", "--logins", osLogin)
	if res.Code != 0 {
		t.Fatalf("users add: %s", res)
	}
	token, signup := parseInvite(t, res.Stdout)
	u := signupViaCLI(t, c, append(signup, "--password-stdin"), token+"\n", "developer")

	home := c.Login(u)
	st := c.Warden(home, nil, "status")
	if st.Code != 0 || !strings.Contains(st.Stdout, "developer") || !strings.Contains(st.Stdout, osLogin) {
		t.Fatalf("status: %s", st)
	}
	ls := c.Warden(home, nil, "ls", "-o", "json")
	var listed []auth.Node
	if ls.Code != 0 || json.Unmarshal([]byte(ls.Stdout), &listed) != nil || len(listed) != 1 ||
		listed[0].Name != "node1" || listed[0].Labels["env"] != "dev" {
		t.Fatalf("ls: %s", ls)
	}
	cfg := c.SSHConfig(home)

	t.Run("whoami", func(t *testing.T) {
		r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@node1", "whoami; echo HOME=$HOME")...)
		if r.Code != 0 || !strings.Contains(r.Stdout, osLogin+"\n") || !strings.Contains(r.Stdout, "HOME=/home/"+osLogin) {
			t.Fatalf("ssh whoami: %s", r)
		}
	})
	t.Run("root denied", func(t *testing.T) {
		r := Run(t, nil, "ssh", sshArgs(cfg, "root@node1", "true")...)
		if r.Code == 0 {
			t.Fatalf("root login was allowed: %s", r)
		}
		if !strings.Contains(r.Stderr, `login "root"`) && !strings.Contains(r.Stderr, "Permission denied") {
			t.Fatalf("unexpected denial message: %s", r)
		}
	})
	t.Run("exit status", func(t *testing.T) {
		r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@node1", "exit 42")...)
		if r.Code != 42 {
			t.Fatalf("want exit 42: %s", r)
		}
		w := c.Warden(home, nil, "ssh", osLogin+"@node1", "echo", "via-warden;", "exit", "42")
		if w.Code != 42 || !strings.Contains(w.Stdout, "via-warden") {
			t.Fatalf("warden ssh exit status: %s", w)
		}
	})
	t.Run("pty", func(t *testing.T) {
		r := Run(t, nil, "ssh", sshArgs(cfg, "-tt", osLogin+"@node1", "tty")...)
		if r.Code != 0 || !strings.Contains(r.Stdout, "/dev/pts/") {
			t.Fatalf("ssh -tt tty: %s", r)
		}
	})
	t.Run("scp and sftp", func(t *testing.T) {
		data := make([]byte, 1<<20+123)
		rand.Read(data)
		local := filepath.Join(t.TempDir(), "blob")
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
		remote := "/tmp/warden-e2e-" + randHex(t)
		t.Cleanup(func() { os.Remove(remote); os.Remove(remote + ".2") })
		if r := Run(t, nil, "scp", sshArgs(cfg, "-q", local, osLogin+"@node1:"+remote)...); r.Code != 0 {
			t.Fatalf("scp upload: %s", r)
		}
		back := filepath.Join(t.TempDir(), "back")
		if r := Run(t, nil, "scp", sshArgs(cfg, "-q", osLogin+"@node1:"+remote, back)...); r.Code != 0 {
			t.Fatalf("scp download: %s", r)
		}
		assertSameFile(t, back, data)
		// The file on the node belongs to the session's OS user.
		if r := Run(t, nil, "stat", "-c", "%U", remote); strings.TrimSpace(r.Stdout) != osLogin {
			t.Fatalf("uploaded file owner = %q, want %s", r.Stdout, osLogin)
		}
		batch := "put " + local + " " + remote + ".2\nget " + remote + ".2 " + back + ".2\n"
		if r := Run(t, strings.NewReader(batch), "sftp", sshArgs(cfg, "-b", "-", osLogin+"@node1")...); r.Code != 0 {
			t.Fatalf("sftp: %s", r)
		}
		assertSameFile(t, back+".2", data)
		// And warden scp.
		w := c.Warden(home, nil, "scp", "-q", osLogin+"@node1:"+remote, back+".3")
		if w.Code != 0 {
			t.Fatalf("warden scp: %s", w)
		}
		assertSameFile(t, back+".3", data)
	})
	t.Run("foreign and expired certificates", func(t *testing.T) {
		key := filepath.Join(home, "key")
		// A certificate from another CA for the same key.
		other, err := ca.GenerateKeys("other")
		if err != nil {
			t.Fatal(err)
		}
		foreign := issueWith(t, other, key, osLogin, time.Hour)
		r := Run(t, nil, "ssh", c.bareSSHArgs(home, key, foreign, osLogin+"@node1", "true")...)
		if r.Code == 0 {
			t.Fatalf("certificate from a foreign CA accepted: %s", r)
		}
		// A certificate from the right CA that has expired.
		expired := issueWithAuthority(t, c, key, osLogin, 2*time.Second)
		time.Sleep(3 * time.Second)
		r = Run(t, nil, "ssh", c.bareSSHArgs(home, key, expired, osLogin+"@node1", "true")...)
		if r.Code == 0 {
			t.Fatalf("expired certificate accepted: %s", r)
		}
		// The same key with the profile's valid certificate works: the
		// refusals above were about the certificates.
		r = Run(t, nil, "ssh", c.bareSSHArgs(home, key, filepath.Join(home, "key-cert.pub"), osLogin+"@node1", "true")...)
		if r.Code != 0 {
			t.Fatalf("valid certificate refused: %s", r)
		}
	})
	t.Run("audit", func(t *testing.T) {
		want := []string{audit.UserCreate, audit.UserLogin, audit.CertIssued, audit.Exec, audit.SessionStart, audit.SessionEnd}
		deadline := patience.Deadline(t)
		for {
			missing := []string{}
			for _, typ := range want {
				evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: typ})
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) == 0 {
					missing = append(missing, typ)
				}
			}
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("audit events missing: %v", missing)
			}
			time.Sleep(100 * time.Millisecond)
		}
		r := c.Warden(home, nil, "audit", "search", "--type", "user.login", "--user", "developer", "--since", "1h", "-o", "json", "--data-dir", c.DataDir)
		if r.Code != 0 {
			t.Fatalf("audit search: %s", r)
		}
		var ev audit.Event
		if err := json.Unmarshal([]byte(strings.SplitN(r.Stdout, "\n", 2)[0]), &ev); err != nil || ev.Event != "user.login" || !ev.Success {
			t.Fatalf("audit search output: %v %s", err, r.Stdout)
		}
		// The developer cannot read the audit log (no role allows it).
		r = c.Warden(home, nil, "--data-dir", t.TempDir(), "audit", "search")
		if r.Code == 0 || !strings.Contains(r.Stderr, "denied") {
			t.Fatalf("developer read the audit log: %s", r)
		}
	})
}

// bareSSHArgs builds ssh arguments with exactly one certificate, without
// the generated config (OpenSSH adds -o CertificateFile to the config's).
func (c *Cluster) bareSSHArgs(home, key, cert string, rest ...string) []string {
	return append([]string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile=" + key, "-o", "CertificateFile=" + cert,
		"-o", "UserKnownHostsFile=" + filepath.Join(home, "known_hosts"), "-o", "StrictHostKeyChecking=yes",
		"-o", "ProxyCommand=" + WardenBinary + " --home " + home + " proxy ssh %r@%h:%p"}, rest...)
}

// parseInvite finds, in the output of users add or reset, the invite token
// and the signup command's arguments.
func parseInvite(t *testing.T, out string) (token string, args []string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ([0-9a-f]{64})$`).FindStringSubmatch(out)
	cmd := regexp.MustCompile(`(?m)^  warden (signup --proxy \S+ --ca-pin sha256:[0-9a-f]{64})$`).FindStringSubmatch(out)
	if m == nil || cmd == nil || strings.Contains(out, "/web/") {
		t.Fatalf("no invite token and signup command (or a dead link) in:\n%s", out)
	}
	return m[1], strings.Fields(cmd[1])
}

// signupViaCLI runs warden signup with args; stdin gets prefix at once,
// then the password and the TOTP code once the otpauth URL is printed.
func signupViaCLI(t *testing.T, c *Cluster, args []string, prefix, name string) *User {
	t.Helper()
	u := &User{Name: name, Password: "a long enough password for " + name}
	signupAs(t, args, prefix, u, t.TempDir())
	return u
}

// signupAs runs warden signup with args for u with the profile home:
// stdin gets prefix at once, then u's password and its next TOTP code
// once the secret is printed.
func signupAs(t *testing.T, args []string, prefix string, u *User, home string) {
	t.Helper()
	pr, pw := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan Result, 1)
	go func() {
		var errb bytes.Buffer
		code := cli.RunIO(context.Background(), append([]string{"--home", home}, args...),
			&cli.IO{In: pr, Out: outW, Err: &errb})
		outW.Close()
		done <- Result{Code: code, Stderr: errb.String()}
	}()
	if prefix != "" {
		go io.WriteString(pw, prefix)
	}
	var out strings.Builder
	sc := bufio.NewScanner(outR)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if i := strings.Index(line, "otpauth://"); i >= 0 {
			m := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(line[i:])
			if m == nil {
				t.Fatalf("no secret in %q", line)
			}
			u.TOTPSecret = m[1]
			io.WriteString(pw, u.Password+"\n"+u.NextOTP(t)+"\n")
		}
	}
	pw.Close()
	res := <-done
	if res.Code != 0 || u.TOTPSecret == "" || !strings.Contains(out.String(), "Signup complete") {
		t.Fatalf("signup: code %d\n%s\n%s", res.Code, out.String(), res.Stderr)
	}
}

func assertSameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs: %d bytes, want %d", path, len(got), len(want))
	}
}

func randHex(t *testing.T) string {
	tok, err := identity.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok[:12]
}

func publicKeyOf(t *testing.T, keyPath string) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

func writeCert(t *testing.T, cert *ssh.Certificate) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cert.pub")
	if err := os.WriteFile(p, ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func issueWith(t *testing.T, k *ca.Keys, keyPath, login string, ttl time.Duration) string {
	t.Helper()
	a, err := ca.New(k, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.IssueUser(ca.UserCertRequest{PublicKey: publicKeyOf(t, keyPath), Username: "developer",
		Principals: []string{login}, Roles: []string{"access"}, Traits: map[string][]string{"logins": {login}}, TTL: ttl, PermitPTY: true})
	if err != nil {
		t.Fatal(err)
	}
	return writeCert(t, cert)
}

func issueWithAuthority(t *testing.T, c *Cluster, keyPath, login string, ttl time.Duration) string {
	t.Helper()
	cert, err := c.Proc.Auth().Authority().IssueUser(ca.UserCertRequest{PublicKey: publicKeyOf(t, keyPath), Username: "developer",
		Principals: []string{login}, Roles: []string{"access"}, Traits: map[string][]string{"logins": {login}}, TTL: ttl, PermitPTY: true})
	if err != nil {
		t.Fatal(err)
	}
	return writeCert(t, cert)
}
