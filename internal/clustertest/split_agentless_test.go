//go:build integration

package clustertest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/krl"
	"github.com/warden-sh/warden/internal/testkit"
)

// TestSplitProxyAgentless: an agentless server (the real OpenSSH sshd,
// trusting the cluster's user CA and presenting a host certificate from
// warden sign --host, set up with the CLI as docs/agentless.md says) on a
// host of its own, reached through a proxy running apart from auth (each
// a process on a host of its own, on PostgreSQL). The proxy asks auth
// for the decision and the one-minute certificate for sshd, and for the
// host certificate it presents in the server's name: the real OpenSSH
// client and warden ssh reach sshd through it; a login the roles do not
// allow is refused; a lock through auth ends the live session within a
// second and refuses the next; the session is recorded at the proxy and
// its recording and events reach auth as the server's.
func TestSplitProxyAgentless(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	if r := Run(t, nil, "usermod", "-p", "*", osLogin); r.Code != 0 {
		t.Fatalf("usermod: %s", r)
	}
	s := newSplitCluster(t)
	authA := s.StartAuth("auth-a")
	proxyA := s.StartProxy("proxy-a", authA, authA)
	cli := func(args ...string) Result {
		t.Helper()
		r := s.adminCLI(authA, args...)
		if r.Code != 0 {
			t.Fatalf("warden %s: %s", strings.Join(args, " "), r)
		}
		return r
	}

	// The agentless server, on a host of its own.
	h := s.lab.Host("sshd1")
	dir := t.TempDir()
	cli("nodes", "add", "agentless1", "--addr", "127.0.0.1:1", "--labels", "env=dev", "--agentless")
	userCA, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cli("ca", "export", "--type", "user").Stdout))
	if err != nil {
		t.Fatal(err)
	}
	krlPath := filepath.Join(dir, "warden.krl")
	identity := filepath.Join(dir, "warden-krl.json")
	cli("krl", "-o", krlPath)
	sshd := testkit.StartSSHD(t, testkit.SSHDOptions{
		NetNS:   h.NS,
		Listen:  h.IP + ":22",
		UserCAs: []ssh.PublicKey{userCA},
		HostCert: func(pub ssh.PublicKey) (*ssh.Certificate, error) {
			pubFile, certFile := filepath.Join(dir, "host.pub"), filepath.Join(dir, "host-cert.pub")
			if err := os.WriteFile(pubFile, ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
				return nil, err
			}
			cli("sign", "--host", "agentless1", "--principals", h.IP, "--pubkey", pubFile, "-o", certFile, "--krl-identity", identity)
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
		Config: []string{"RevokedKeys " + krlPath, "LogLevel VERBOSE"},
	})
	cli("nodes", "add", "agentless1", "--addr", sshd.Addr, "--labels", "env=dev", "--agentless")
	// The server's KRL sync runs on its host and reaches the cluster through
	// the proxy running apart only (its identity names the proxy).
	var idf map[string]any
	b, err := os.ReadFile(identity)
	if err == nil {
		err = json.Unmarshal(b, &idf)
	}
	if err != nil {
		t.Fatalf("the KRL identity: %v", err)
	}
	idf["proxy_addr"] = proxyA.Addr()
	if b, err = json.Marshal(idf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(identity, b, 0o644); err != nil {
		t.Fatal(err)
	}
	krlSync := h.Start(t, WardenBinary, "--debug", "start", "--services", "krl", "--krl-identity", identity, "--host-key", sshd.HostKey,
		"--krl-file", krlPath)
	krlSync.waitOutput(t, "KRL updated")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd log:\n%s", sshd.Log.String())
		}
	})

	u := s.AddUser(authA, "agentuser", []string{"access"}, []string{osLogin})
	cfg := s.Login(u, proxyA)
	target := osLogin + "@agentless1"
	var r Result
	testkit.WaitFor(t, "ssh through the proxy running apart to the agentless server", func() bool {
		r = Run(t, nil, "ssh", sshArgs(cfg, target, "echo", "agentless-through-split")...)
		return r.Code == 0
	})
	if !strings.Contains(r.Stdout, "agentless-through-split") {
		t.Fatalf("ssh to the agentless server: %s", r)
	}
	if !strings.Contains(sshd.Log.String(), "agentuser") {
		t.Fatalf("sshd did not log the login with the user's certificate (key ID):\n%s", sshd.Log.String())
	}
	home := filepath.Dir(cfg)
	if w := Run(t, nil, WardenBinary, "--home", home, "ssh", target, "echo", "via-warden-ssh"); w.Code != 0 || !strings.Contains(w.Stdout, "via-warden-ssh") {
		t.Fatalf("warden ssh through the proxy running apart: %s", w)
	}
	// A login the user's roles do not allow: refused by auth's decision.
	if r := Run(t, nil, "ssh", sshArgs(cfg, "root@agentless1", "true")...); r.Code == 0 {
		t.Fatalf("a login the roles do not allow: %s", r)
	}

	// Recorded at the proxy, stored at auth as the server's recording.
	if r := Run(t, strings.NewReader("echo split-$((6*7))-marker\nexit\n"), "ssh", sshArgs(cfg, "-tt", target)...); r.Code != 0 || !strings.Contains(r.Stdout, "split-42-marker") {
		t.Fatalf("ssh -tt: %s", r)
	}
	var id string
	testkit.WaitFor(t, "the recording in recordings search", func() bool {
		out := s.adminCLI(authA, "recordings", "search", "split-42-marker")
		id = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f-]{27}`).FindString(out.Stdout)
		return out.Code == 0 && id != ""
	})
	testkit.WaitFor(t, "session.start, session.end and recording.complete of the session as agentless1's", func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{SessionID: id})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, ev := range evs {
			if ev.Node == "agentless1" && ev.User == "agentuser" {
				seen[ev.Event] = true
			}
		}
		return seen[audit.SessionStart] && seen[audit.SessionEnd] && seen[audit.RecordingComplete]
	})
	if p := cli("play", id, "--speed", "1000"); !strings.Contains(p.Stdout, "split-42-marker") {
		t.Fatalf("play: %s", p)
	}
	cli("recordings", "verify", id)

	// A role edit through auth: the proxy decides the live session again
	// at auth and ends it.
	role := func(logins string) Result {
		r := Run(t, strings.NewReader(`kind: role
metadata: {name: editable}
spec:
  allow:
    logins: `+logins+`
    node_labels: {'*': '*'}
`), WardenBinary, "--data-dir", authA.dataDir, "--home", t.TempDir(), "apply", "-f", "-")
		if r.Code != 0 {
			t.Fatalf("apply role: %s", r)
		}
		return r
	}
	role(`['{{internal.logins}}']`)
	bob := s.AddUser(authA, "bob", []string{"editable"}, []string{osLogin})
	bobCfg := s.Login(bob, proxyA)
	bobLive, err := startLive(t, sshArgs(bobCfg, target, liveCommand))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	role(`[someone-else]`)
	// Well within the periodic pass (every 10 s): the watch's role event
	// must do it.
	res, took, ended := endsWithin(t, bobLive, start, 2*time.Second)
	if !ended || res.Code == 0 || !strings.Contains(res.Stderr, "is not allowed on node") {
		t.Fatalf("the role edit did not end the live session (%s): %s", took, res)
	}
	t.Logf("a role edit through auth ended the live agentless session through the proxy running apart %s after the apply started",
		took.Round(time.Millisecond))

	// A lock through auth ends the live session.
	live, err := startLive(t, sshArgs(cfg, target, liveCommand))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	cli("lock", "--user", "agentuser", "--message", "agentless-locked")
	res, took, ended = endsWithin(t, live, start, time.Second)
	if !ended {
		t.Fatalf("the agentless session through the proxy running apart still runs %s after the lock", took)
	}
	if res.Code == 0 {
		t.Fatalf("the session did not end by the lock: %s", res)
	}
	t.Logf("a lock through auth ended a session user → proxy running apart → sshd %s after the lock command started: %s",
		took.Round(time.Millisecond), strings.TrimSpace(res.Stderr))
	// sshd itself refuses the user's certificate: the KRL sync fetched the
	// new KRL through the proxy.
	certBytes, err := os.ReadFile(filepath.Join(home, "key-cert.pub"))
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(certBytes)
	if err != nil {
		t.Fatal(err)
	}
	userCert := k.(*ssh.Certificate)
	testkit.WaitFor(t, "sshd's KRL to revoke the locked user's certificate", func() bool {
		b, err := os.ReadFile(krlPath)
		if err != nil {
			t.Fatal(err)
		}
		l, err := krl.Parse(b)
		return err == nil && l.Revoked(userCert)
	})
	t.Logf("sshd's KRL revoked the locked user's certificate %s after the lock command started (synced through the proxy running apart)",
		time.Since(start).Round(time.Millisecond))
	if r := Run(t, nil, "ssh", sshArgs(cfg, target, "true")...); r.Code == 0 {
		t.Fatalf("a new session while locked: %s", r)
	}

}
