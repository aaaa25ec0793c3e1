//go:build integration

package clustertest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/cli"
	"github.com/warden-sh/warden/internal/krl"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// cert0 is the cluster's user CA key.
func cert0(t testing.TB, c *Cluster) ssh.PublicKey {
	t.Helper()
	r := c.Warden(t.TempDir(), nil, "ca", "export", "--type", "user")
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.Stdout))
	if err != nil {
		t.Fatalf("ca export: %s", r)
	}
	return k
}

// TestAgentlessServer is SCENARIOS S5 with real OpenSSH on both ends: an
// sshd without any Warden software, reached through the proxy with the
// same roles, recorded and audited at the proxy, cut by locks, and
// refusing a locked user's still-valid certificate by itself (KRL).
func TestAgentlessServer(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	// sshd without PAM refuses accounts with a locked password (useradd's
	// default): no password, not locked.
	if r := Run(t, nil, "usermod", "-p", "*", osLogin); r.Code != 0 {
		t.Fatalf("usermod: %s", r)
	}
	c := New(t, Options{NoNode: true})
	a := StartAgentless(t, c, "legacy1", "env=prod")
	admin := t.TempDir()
	u := c.AddUser("alice", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	target := osLogin + "@legacy1"

	t.Run("listed like any node", func(t *testing.T) {
		if r := c.Warden(home, nil, "ls"); r.Code != 0 || !strings.Contains(r.Stdout, "legacy1") || !strings.Contains(r.Stdout, "env=prod") {
			t.Fatalf("ls: %s", r)
		}
		r := c.Warden(admin, nil, "nodes", "ls")
		if r.Code != 0 || !regexp.MustCompile(`legacy1\s+agentless \S+\s+yes\s+env=prod\s+\S+ ago`).MatchString(r.Stdout) {
			t.Fatalf("nodes ls: %s", r)
		}
	})
	t.Run("ssh, warden ssh, exit status", func(t *testing.T) {
		r := Run(t, nil, "ssh", sshArgs(cfg, target, "whoami; exit 7")...)
		if r.Code != 7 || !strings.Contains(r.Stdout, osLogin) {
			t.Fatalf("ssh: %s", r)
		}
		w := c.Warden(home, nil, "ssh", target, "echo", "via-warden")
		if w.Code != 0 || !strings.Contains(w.Stdout, "via-warden") {
			t.Fatalf("warden ssh: %s", w)
		}
	})
	t.Run("root denied by the same decision", func(t *testing.T) {
		r := Run(t, nil, "ssh", sshArgs(cfg, "root@legacy1", "true")...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "access denied") {
			t.Fatalf("root: %s", r)
		}
	})
	t.Run("an sshd without a Warden host certificate is refused", func(t *testing.T) {
		// No trust on first use: a server (or a man in the middle) that
		// presents a plain host key is not connected to.
		// A host certificate from another CA, naming the server, is no
		// better.
		_, foreignKey, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		foreign, _ := ssh.NewSignerFromKey(foreignKey)
		for name, hostCert := range map[string]func(ssh.PublicKey) (*ssh.Certificate, error){
			"rogue-plain": nil,
			"rogue-foreign": func(pub ssh.PublicKey) (*ssh.Certificate, error) {
				cert := &ssh.Certificate{Key: pub, Serial: 1, CertType: ssh.HostCert, KeyId: "rogue-foreign",
					ValidPrincipals: []string{"rogue-foreign"}, ValidBefore: ssh.CertTimeInfinity}
				return cert, cert.SignCert(rand.Reader, foreign)
			},
		} {
			rogue := testkit.StartSSHD(t, testkit.SSHDOptions{UserCAs: []ssh.PublicKey{cert0(t, c)}, HostCert: hostCert})
			if r := c.Warden(admin, nil, "nodes", "add", name, "--addr", rogue.Addr, "--agentless"); r.Code != 0 {
				t.Fatalf("nodes add: %s", r)
			}
			cfg := c.SSHConfig(home)
			r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@"+name, "echo reached")...)
			c.Warden(admin, nil, "nodes", "rm", name)
			if r.Code == 0 || strings.Contains(r.Stdout, "reached") || !strings.Contains(r.Stderr, "host certificate") {
				t.Fatalf("ssh to %s: %s", name, r)
			}
		}
	})
	t.Run("scp and sftp", func(t *testing.T) {
		data := bytes.Repeat([]byte("warden agentless "), 70000)
		local := filepath.Join(t.TempDir(), "blob")
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
		remote := "/tmp/warden-agentless-" + randHex(t)
		t.Cleanup(func() { os.Remove(remote) })
		if r := Run(t, nil, "scp", sshArgs(cfg, "-q", local, target+":"+remote)...); r.Code != 0 {
			t.Fatalf("scp: %s", r)
		}
		if got, err := os.ReadFile(remote); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("scp wrote %d bytes (%v), want %d", len(got), err, len(data))
		}
		back := filepath.Join(t.TempDir(), "back")
		if r := Run(t, strings.NewReader("get "+remote+" "+back+"\n"), "sftp", sshArgs(cfg, "-b", "-", target)...); r.Code != 0 {
			t.Fatalf("sftp: %s", r)
		}
		if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
			t.Fatalf("sftp read %d bytes, want %d", len(got), len(data))
		}
	})
	t.Run("rsync and ansible", func(t *testing.T) {
		src := t.TempDir()
		for i := 0; i < 3; i++ {
			if err := os.WriteFile(filepath.Join(src, "f"+strings.Repeat("x", i)), bytes.Repeat([]byte{byte(i)}, 10000+i), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		remote := "/tmp/warden-agentless-rsync-" + randHex(t)
		t.Cleanup(func() { os.RemoveAll(remote) })
		if r := Run(t, nil, "rsync", "-a", "-e", "ssh "+strings.Join(sshArgs(cfg), " "), src+"/", target+":"+remote+"/"); r.Code != 0 {
			t.Fatalf("rsync: %s", r)
		}
		if got, err := os.ReadFile(filepath.Join(remote, "fxx")); err != nil || len(got) != 10002 {
			t.Fatalf("rsync copied %d bytes (%v)", len(got), err)
		}
		if _, err := os.Stat("/usr/bin/ansible"); err != nil {
			t.Fatal("ansible is required (apt-get install ansible)")
		}
		inv := filepath.Join(t.TempDir(), "hosts")
		if err := os.WriteFile(inv, []byte("legacy1 ansible_user="+osLogin+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := Run(t, nil, "env", "ANSIBLE_HOST_KEY_CHECKING=True", "ANSIBLE_SSH_ARGS=-F "+cfg, "ANSIBLE_LOCAL_TEMP="+t.TempDir(),
			"ansible", "-i", inv, "legacy1", "-m", "ping")
		if r.Code != 0 || !strings.Contains(r.Stdout, "pong") {
			t.Fatalf("ansible ping: %s", r)
		}
	})
	t.Run("file transfer refused by the roles", func(t *testing.T) {
		c.ApplyRoles(`kind: role
metadata: {name: nofiles}
spec:
  options: {file_transfer: false}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`)
		nf := c.AddUser("nofiles", []string{"nofiles"}, []string{osLogin})
		nfCfg := c.SSHConfig(c.Login(nf))
		local := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(local, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		remote := "/tmp/warden-agentless-nofiles-" + randHex(t)
		t.Cleanup(func() { os.Remove(remote) })
		if r := Run(t, nil, "scp", sshArgs(nfCfg, "-q", local, osLogin+"@legacy1:"+remote)...); r.Code == 0 {
			t.Fatalf("scp allowed without file_transfer: %s", r)
		}
		if r := Run(t, nil, "ssh", sshArgs(nfCfg, osLogin+"@legacy1", "scp -t /tmp")...); r.Code == 0 || !strings.Contains(r.Stderr, "file transfer") {
			t.Fatalf("scp -t allowed without file_transfer: %s", r)
		}
		if _, err := os.Stat(remote); err == nil {
			t.Fatal("the file was written")
		}
		if r := Run(t, nil, "ssh", sshArgs(nfCfg, osLogin+"@legacy1", "echo shell-ok")...); r.Code != 0 || !strings.Contains(r.Stdout, "shell-ok") {
			t.Fatalf("a plain command refused: %s", r)
		}
	})
	t.Run("recorded and audited at the proxy", func(t *testing.T) {
		r := Run(t, strings.NewReader("echo agentless-$((6*7))-marker\nexit\n"), "ssh", sshArgs(cfg, "-tt", target)...)
		if r.Code != 0 || !strings.Contains(r.Stdout, "agentless-42-marker") {
			t.Fatalf("ssh -tt: %s", r)
		}
		var id string
		testkit.WaitFor(t, "the recording in recordings search", func() bool {
			s := c.Warden(admin, nil, "recordings", "search", "agentless-42-marker")
			m := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f-]{27}`).FindString(s.Stdout)
			id = m
			return s.Code == 0 && m != ""
		})
		// The session ends at the proxy once ssh has gone: its end and the
		// recording's completion follow.
		seen := map[string]bool{}
		testkit.WaitFor(t, "session.start, session.end and recording.complete of the session", func() bool {
			evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.Node == "legacy1" && ev.User == "alice" {
					seen[ev.Event] = true
				}
			}
			return seen[audit.SessionStart] && seen[audit.SessionEnd] && seen[audit.RecordingComplete]
		}, seen)
		if p := c.Warden(admin, nil, "play", id, "--speed", "1000"); p.Code != 0 || !strings.Contains(p.Stdout, "agentless-42-marker") {
			t.Fatalf("play: %s", p)
		}
		if v := c.Warden(admin, nil, "recordings", "verify", id); v.Code != 0 {
			t.Fatalf("recordings verify: %s", v)
		}
	})

	t.Run("record_session strict refuses what the proxy cannot record", func(t *testing.T) {
		c.ApplyRoles(`kind: role
metadata: {name: strict}
spec:
  options: {record_session: strict}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`)
		st := c.AddUser("strict", []string{"strict"}, []string{osLogin})
		stCfg := c.SSHConfig(c.Login(st))
		// Auth's recording store cannot take recordings: its directory is
		// now a file.
		dir := filepath.Join(c.DataDir, "recordings")
		if err := os.Rename(dir, dir+".away"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		defer func() {
			os.Remove(dir)
			if err := os.Rename(dir+".away", dir); err != nil {
				t.Fatal(err)
			}
		}()
		r := Run(t, strings.NewReader("echo strict-reached\nexit\n"), "ssh", sshArgs(stCfg, "-tt", osLogin+"@legacy1")...)
		if r.Code == 0 || strings.Contains(r.Stdout, "strict-reached") || !strings.Contains(r.Stdout+r.Stderr, "recording is required") {
			t.Fatalf("strict session without recording: %s", r)
		}
		// best_effort (alice's access role) goes on without it.
		if r := Run(t, strings.NewReader("echo best-effort-reached\nexit\n"), "ssh", sshArgs(cfg, "-tt", target)...); r.Code != 0 || !strings.Contains(r.Stdout, "best-effort-reached") {
			t.Fatalf("best_effort session without recording: %s", r)
		}
	})

	t.Run("a role edit or removal ends the live session", func(t *testing.T) {
		role := func(logins string) string {
			return `kind: role
metadata: {name: editable}
spec:
  allow:
    logins: ` + logins + `
    node_labels: {'*': '*'}
`
		}
		c.ApplyRoles(role(`['{{internal.logins}}']`))
		bob := c.AddUser("bob", []string{"editable"}, []string{osLogin})
		bobCfg := c.SSHConfig(c.Login(bob))
		for _, tc := range []struct {
			name   string
			narrow func()
			want   string
		}{
			{"the login taken out of the role", func() { c.ApplyRoles(role(`[someone-else]`)) }, "access denied"},
			{"the role deleted", func() {
				if err := c.Admin.DeleteRole(context.Background(), "editable"); err != nil {
					t.Fatal(err)
				}
			}, "access denied"},
		} {
			c.ApplyRoles(role(`['{{internal.logins}}']`))
			wait, arm := liveSession(t, sshArgs(bobCfg, osLogin+"@legacy1", liveCommand))
			arm()
			tc.narrow()
			r, took := wait()
			if r.Code == 0 || !strings.Contains(r.Stderr, tc.want) {
				t.Fatalf("%s: the live session ended wrongly: %s", tc.name, r)
			}
			t.Logf("%s ended the live agentless session in %s", tc.name, took.Round(time.Millisecond))
		}
		// Not a lock: nothing is revoked for sshd, and the restored role
		// lets bob in again with the same certificate.
		c.ApplyRoles(role(`['{{internal.logins}}']`))
		if r := Run(t, nil, "ssh", sshArgs(bobCfg, osLogin+"@legacy1", "echo back")...); r.Code != 0 || !strings.Contains(r.Stdout, "back") {
			t.Fatalf("ssh after the role was restored: %s", r)
		}
	})

	// alice's own certificate, used straight against sshd (bypassing the
	// proxy), as someone who copied it would.
	certBytes, err := os.ReadFile(filepath.Join(home, "key-cert.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, _ := ssh.ParseAuthorizedKey(certBytes)
	cert := pub.(*ssh.Certificate)
	_, port, _ := strings.Cut(a.SSHD.Addr, ":")
	direct := func() Result {
		return Run(t, nil, "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "IdentitiesOnly=yes", "-i", filepath.Join(home, "key"), "-o", "CertificateFile="+filepath.Join(home, "key-cert.pub"),
			"-p", port, osLogin+"@127.0.0.1", "echo direct-ok")
	}
	if r := direct(); r.Code != 0 || !strings.Contains(r.Stdout, "direct-ok") {
		t.Fatalf("direct ssh before any lock: %s", r)
	}

	t.Run("a sync that cannot refresh fails closed after --krl-max-stale", func(t *testing.T) {
		// The same identity, with a proxy address where nothing answers.
		b, err := os.ReadFile(a.Identity)
		if err != nil {
			t.Fatal(err)
		}
		var id map[string]any
		if err := json.Unmarshal(b, &id); err != nil {
			t.Fatal(err)
		}
		id["proxy"] = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
		b, _ = json.Marshal(id)
		dir := t.TempDir()
		dead, out := filepath.Join(dir, "id.json"), filepath.Join(dir, "warden.krl")
		if err := os.WriteFile(dead, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		log := &syncbuf.Buffer{}
		done := make(chan int, 1)
		go func() {
			done <- cli.RunIO(ctx, []string{"krl", "sync", "--krl-identity", dead, "--host-key", a.SSHD.HostKey, "--krl-file", out,
				"--krl-max-stale", "1s"}, &cli.IO{In: strings.NewReader(""), Out: log, Err: log})
		}()
		defer func() { cancel(); <-done }()
		testkit.WaitFor(t, "the fail-closed KRL", func() bool {
			b, err := os.ReadFile(out)
			if err != nil {
				return false
			}
			k, err := krl.Parse(b)
			return err == nil && k.Revoked(cert)
		}, log)
		if !strings.Contains(log.String(), "KRL refresh failed") {
			t.Fatalf("the failures are not logged as errors:\n%s", log)
		}
	})
	t.Run("a lock ends the live session and sshd refuses the certificate", func(t *testing.T) {
		wait, arm := liveSession(t, sshArgs(cfg, target, liveCommand))
		arm()
		lockAt := time.Now()
		id := lockID(t, c.Warden(admin, nil, "lock", "--user", "alice", "--ttl", "10m", "--message", "investigating"))
		r, took := wait()
		if r.Code == 0 || !strings.Contains(r.Stderr, "investigating") {
			t.Fatalf("locked session ended wrongly: %s", r)
		}
		if took > time.Second {
			t.Errorf("the lock took %s to end the agentless session", took)
		}
		t.Logf("the lock ended the live agentless session in %s", took.Round(time.Millisecond))
		testkit.WaitFor(t, "sshd's KRL to revoke alice's certificate", func() bool { return a.Revoked(t, cert) })
		t.Logf("sshd's KRL file revoked the certificate at most %s after the lock command started", time.Since(lockAt).Round(time.Millisecond))
		if r := direct(); r.Code == 0 {
			t.Fatalf("sshd accepted a locked user's certificate directly: %s", r)
		}
		if !strings.Contains(a.SSHD.Log.String(), "revoked") {
			t.Errorf("sshd's log does not say the key was revoked:\n%s", a.SSHD.Log.String())
		}
		if r := Run(t, nil, "ssh", sshArgs(cfg, target, "true")...); r.Code == 0 {
			t.Fatalf("ssh through the proxy while locked: %s", r)
		}
		if r := c.Warden(admin, nil, "unlock", id); r.Code != 0 {
			t.Fatalf("unlock: %s", r)
		}
		testkit.WaitFor(t, "sshd's KRL to let alice's certificate in again", func() bool { return !a.Revoked(t, cert) })
		if r := direct(); r.Code != 0 {
			t.Fatalf("direct ssh after the unlock: %s", r)
		}
	})
}

// TestAgentlessSessionMFA: a role with require_session_mfa applies to an
// agentless server as to an agent node, at the proxy (sshd knows nothing
// of it): warden ssh with a scripted TOTP code connects, the same code
// again is refused, the real OpenSSH client through the ProxyCommand asks
// on its terminal, and ssh -J with the certificate from login is refused.
func TestAgentlessSessionMFA(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	if r := Run(t, nil, "usermod", "-p", "*", osLogin); r.Code != 0 {
		t.Fatalf("usermod: %s", r)
	}
	c := New(t, Options{NoNode: true})
	StartAgentless(t, c, "legacy1", "env=prod")
	c.ApplyRoles(sessionMFARole)
	u := c.AddUser("alice", []string{"prod"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	target := osLogin + "@legacy1"

	// ssh -J with the certificate from login: the proxy refuses.
	r := Run(t, nil, "ssh", sshArgs(cfg, "-J", osLogin+"@"+c.ProxyAddr(), target, "echo reached")...)
	if r.Code == 0 || strings.Contains(r.Stdout, "reached") || !strings.Contains(r.Stdout+r.Stderr, "requires an MFA check for each session") {
		t.Fatalf("ssh -J to an agentless server with a certificate from login: %s", r)
	}
	// warden ssh, the code on standard input's first line.
	code := u.NextOTP(t)
	r = c.Warden(home, strings.NewReader(code+"\nvia-warden\n"), "ssh", "--mfa-code-file", "-", target, "cat")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "via-warden" {
		t.Fatalf("warden ssh to an agentless server with a per-session MFA check: %s", r)
	}
	codeFile := filepath.Join(t.TempDir(), "code")
	if err := os.WriteFile(codeFile, []byte(code+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = c.Warden(home, nil, "ssh", "--mfa-code-file", codeFile, target, "echo reached")
	if r.Code == 0 || strings.Contains(r.Stdout, "reached") || !strings.Contains(r.Stderr, "already used") {
		t.Fatalf("a replayed TOTP code: %s", r)
	}
	// The real OpenSSH client on a terminal: the ProxyCommand asks.
	status, out := sshOnPTY(t, u.NextOTP(t), sshArgs(cfg, target, "echo via-openssh")...)
	if status != 0 || !strings.Contains(out, "via-openssh") {
		t.Fatalf("ssh through the ProxyCommand on a terminal: status %d\n%s", status, out)
	}
	evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.MFAVerify, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for _, ev := range evs {
		if ev.Success && ev.Fields["purpose"] == "session" {
			ok++
		}
	}
	if ok != 2 {
		t.Fatalf("%d audited per-session MFA checks, want 2", ok)
	}
}
