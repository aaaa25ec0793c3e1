package clustertest

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/syncbuf"
)

// liveSession starts `ssh ... sleep 120` and returns a function that waits
// for it to end and reports how, and how long after end() was armed.
func liveSession(t *testing.T, args []string) (wait func() (Result, time.Duration), armed func()) {
	t.Helper()
	cmd := exec.Command("ssh", args...)
	var out, errb syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan Result, 1)
	go func() {
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		done <- Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
	}()
	// Wait until the session runs (its output marker arrives).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "started") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("session did not start: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var at time.Time
	t.Cleanup(func() { cmd.Process.Kill() })
	return func() (Result, time.Duration) {
			select {
			case r := <-done:
				return r, time.Since(at)
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("session still alive 20s after the trigger")
				return Result{}, 0
			}
		}, func() {
			at = time.Now()
		}
}

func lockID(t *testing.T, r Result) string {
	t.Helper()
	m := regexp.MustCompile(`lock id (\S+)\)`).FindStringSubmatch(r.Stdout)
	if r.Code != 0 || m == nil {
		t.Fatalf("warden lock: %s", r)
	}
	return m[1]
}

// TestLocksEndLiveSessions is SCENARIOS S3 with the real OpenSSH client.
func TestLocksEndLiveSessions(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "prod1", NodeLabels: map[string]string{"env": "prod"}})
	u := c.AddUser("contractor", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	admin := t.TempDir()
	for _, tc := range []struct {
		flag, value string
	}{
		{"--user", "contractor"},
		{"--node", "prod1"},
		{"--role", "access"},
		{"--login", osLogin},
	} {
		t.Run(strings.TrimPrefix(tc.flag, "--"), func(t *testing.T) {
			wait, arm := liveSession(t, sshArgs(cfg, osLogin+"@prod1", "echo started; sleep 120"))
			if tc.flag == "--user" {
				// A command without a terminal is a live session too.
				waitFor(t, 5*time.Second, "the command in sessions ls", func() bool {
					r := c.Warden(admin, nil, "sessions", "ls")
					return regexp.MustCompile(`contractor\s+` + osLogin + `\s+prod1\s+exec\s`).MatchString(r.Stdout)
				})
			}
			arm()
			id := lockID(t, c.Warden(admin, nil, "lock", tc.flag, tc.value, "--ttl", "10m", "--message", "investigating"))
			r, took := wait()
			if r.Code == 0 || !strings.Contains(r.Stderr, "investigating") {
				t.Fatalf("locked session ended wrongly: %s", r)
			}
			t.Logf("lock %s=%s ended the live session in %s", tc.flag, tc.value, took.Round(time.Millisecond))
			if took > 2*time.Second {
				t.Fatalf("lock took %s to end the session", took)
			}
			if r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@prod1", "true")...); r.Code == 0 {
				t.Fatalf("new ssh allowed while locked: %s", r)
			}
			if r := c.Warden(admin, nil, "unlock", id); r.Code != 0 {
				t.Fatalf("unlock: %s", r)
			}
			// Access comes back at once: no restart, no cache wait (a
			// short retry covers the watch delivery on loopback).
			deadline := time.Now().Add(2 * time.Second)
			for {
				r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@prod1", "true")...)
				if r.Code == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("ssh after unlock: %s", r)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	t.Run("login and API refused while locked", func(t *testing.T) {
		id := lockID(t, c.Warden(admin, nil, "lock", "--user", "contractor", "--message", "call security"))
		if r := c.Warden(home, nil, "ls"); r.Code == 0 || !strings.Contains(r.Stderr, "call security") {
			t.Fatalf("API call while locked: %s", r)
		}
		r := c.Warden(t.TempDir(), strings.NewReader(u.Password+"\n"), "login", "--proxy", c.ProxyAddr(), "--user", "contractor", "--password-stdin", "--otp", u.NextOTP(t))
		if r.Code == 0 || !strings.Contains(r.Stderr, "call security") {
			t.Fatalf("login while locked: %s", r)
		}
		if r := c.Warden(admin, nil, "locks", "ls"); !strings.Contains(r.Stdout, id) {
			t.Fatalf("locks ls: %s", r)
		}
		c.Warden(admin, nil, "rm", "lock/"+id)
		if r := c.Warden(home, nil, "ls"); r.Code != 0 {
			t.Fatalf("API call after unlock: %s", r)
		}
		if r := c.Warden(admin, nil, "audit", "search", "--type", "lock.created"); !strings.Contains(r.Stdout, "user=contractor") {
			t.Fatalf("lock.created not audited: %s", r)
		}
		// Node events reach auth after the node's short linger.
		for _, typ := range []string{"exec", "session.end"} {
			waitFor(t, 5*time.Second, typ+` with "reason":"locked"`, func() bool {
				r := c.Warden(admin, nil, "audit", "search", "--type", typ, "-o", "json")
				return strings.Contains(r.Stdout, `"reason":"locked"`)
			})
		}
		// Ended sessions leave the live list.
		waitFor(t, 5*time.Second, "an empty session list", func() bool {
			r := c.Warden(admin, nil, "sessions", "ls", "-o", "json")
			return r.Code == 0 && !strings.Contains(r.Stdout, `"user":"contractor"`)
		})
	})
	t.Run("bad input", func(t *testing.T) {
		for _, args := range [][]string{
			{"lock"},
			{"lock", "--user", "a", "--role", "b"},
			{"lock", "--user", "a", "--ttl", "soon"},
			{"lock", "--user", "bad name"},
			{"lock", "--user", "a", "--expires", "yesterday"},
		} {
			if r := c.Warden(admin, nil, args...); r.Code == 0 {
				t.Errorf("%v accepted: %s", args, r)
			}
		}
		r := c.Warden(admin, nil, "lock", "--user", "nobody-yet", "--ttl", "1m")
		if r.Code != 0 || !strings.Contains(r.Stderr, "WARNING") {
			t.Fatalf("lock on unknown target: %s", r)
		}
		// A user without the right role cannot unlock.
		if r := c.Warden(home, nil, "--data-dir", t.TempDir(), "unlock", lockID(t, r)); r.Code == 0 {
			t.Fatalf("contractor removed a lock: %s", r)
		}
	})
}

// TestSessionsEndOnExpiryIdleAndRoleChange: certificate expiry, idle timeout
// and a role change each end a live session with a clear message.
func TestSessionsEndOnExpiryIdleAndRoleChange(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "web1"})
	c.ApplyRoles(`
kind: role
metadata: {name: idle}
spec:
  options: {client_idle_timeout: 2s}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
---
kind: role
metadata: {name: temp}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`)
	t.Run("certificate expiry", func(t *testing.T) {
		u := c.AddUser("shortlived", []string{"access"}, []string{osLogin})
		home := c.Login(u, "--ttl", "4s")
		wait, arm := liveSession(t, sshArgs(c.SSHConfig(home), osLogin+"@web1", "echo started; sleep 120"))
		arm()
		r, _ := wait()
		if r.Code == 0 || !strings.Contains(r.Stderr, "certificate expired") {
			t.Fatalf("session outlived its certificate: %s", r)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		u := c.AddUser("idler", []string{"idle"}, []string{osLogin})
		home := c.Login(u)
		wait, arm := liveSession(t, sshArgs(c.SSHConfig(home), osLogin+"@web1", "echo started; sleep 120"))
		arm()
		r, took := wait()
		if r.Code == 0 || !strings.Contains(r.Stderr, "idle") || took > 10*time.Second {
			t.Fatalf("idle session: %s after %s", r, took)
		}
	})
	t.Run("role deleted", func(t *testing.T) {
		u := c.AddUser("temper", []string{"temp"}, []string{osLogin})
		home := c.Login(u)
		wait, arm := liveSession(t, sshArgs(c.SSHConfig(home), osLogin+"@web1", "echo started; sleep 120"))
		arm()
		if r := c.Warden(t.TempDir(), nil, "rm", "role/temp"); r.Code != 0 {
			t.Fatalf("rm role: %s", r)
		}
		r, took := wait()
		if r.Code == 0 || !strings.Contains(r.Stderr, "no longer allows") || took > 2*time.Second {
			t.Fatalf("session survived its role: %s after %s", r, took)
		}
	})
}

// TestLockModeWhenAuthIsDown: with auth unreachable, lock_mode strict ends
// live sessions after the staleness bound; best_effort keeps them.
func TestLockModeWhenAuthIsDown(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NoNode: true})
	c.ApplyRoles(`
kind: role
metadata: {name: strict}
spec:
  options: {lock_mode: strict}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`)
	direct := "127.0.0.1:0"
	n := c.StartNode("edge1", nil, func(cfg *service.NodeAgentConfig) {
		cfg.Listen = direct
		cfg.LockStaleness = 3 * time.Second
	})
	c.WaitForNodes(1)
	strictUser := c.AddUser("strictu", []string{"strict"}, []string{osLogin})
	looseUser := c.AddUser("looseu", []string{"access"}, []string{osLogin})
	strictHome, looseHome := c.Login(strictUser), c.Login(looseUser)
	// Sessions straight to the node's own port, so that stopping auth and
	// the proxy does not cut them by itself.
	args := func(home string) []string {
		host, port, _ := strings.Cut(n.Addr(), ":")
		return []string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
			"-o", "IdentityFile=" + home + "/key", "-o", "CertificateFile=" + home + "/key-cert.pub",
			"-o", "UserKnownHostsFile=" + home + "/known_hosts", "-o", "StrictHostKeyChecking=yes",
			"-o", "HostKeyAlias=" + n.ID(), "-p", port, osLogin + "@" + host, "echo started; sleep 12; echo survived"}
	}
	waitStrict, armStrict := liveSession(t, args(strictHome))
	waitLoose, armLoose := liveSession(t, args(looseHome))
	c.Proc.Close() // auth and proxy are gone
	armStrict()
	armLoose()
	r, took := waitStrict()
	if r.Code == 0 || !strings.Contains(r.Stderr, "lock_mode strict") {
		t.Fatalf("strict session: %s", r)
	}
	t.Logf("strict session ended %s after auth stopped", took.Round(time.Millisecond))
	r, _ = waitLoose()
	if r.Code != 0 || !strings.Contains(r.Stdout, "survived") {
		t.Fatalf("best_effort session did not survive: %s", r)
	}
}

// TestProxyCutsLockedConnections: the proxy also ends relayed connections
// that a new lock matches, once its grace period passes, so a session ends
// even when its node is slow to act. With no grace the proxy acts first
// (the node learns the lock over its watch; a retry covers the rare case
// where the node wins the race).
func TestProxyCutsLockedConnections(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "cut1", Proxy: service.ProxyConfig{LockGrace: -1}})
	u := c.AddUser("mallory", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	jcfg := jumpConfig(t, c, home)
	admin := t.TempDir()
	for _, path := range []struct {
		name string
		args []string
	}{
		{"data connection", sshArgs(cfg, osLogin+"@cut1", "echo started; sleep 120")},
		{"ssh -J", sshArgs(jcfg, "-J", "wjump", osLogin+"@cut1", "echo started; sleep 120")},
	} {
		t.Run(path.name, func(t *testing.T) {
			for attempt := 1; ; attempt++ {
				before := metricValue(t, c, "warden_proxy_lock_disconnects_total")
				wait, arm := liveSession(t, path.args)
				arm()
				id := lockID(t, c.Warden(admin, nil, "lock", "--user", "mallory", "--message", "cut"))
				r, took := wait()
				if r.Code == 0 {
					t.Fatalf("locked session ended cleanly: %s", r)
				}
				if r := c.Warden(admin, nil, "unlock", id); r.Code != 0 {
					t.Fatalf("unlock: %s", r)
				}
				if metricValue(t, c, "warden_proxy_lock_disconnects_total") > before {
					t.Logf("the proxy cut the session %s after the lock", took.Round(time.Millisecond))
					break
				}
				if attempt == 3 {
					t.Fatal("the proxy never cut a locked connection")
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
	// The cut is audited with its reason.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := c.Warden(admin, nil, "audit", "search", "--type", "proxy.disconnect", "--user", "mallory", "-o", "json", "--data-dir", c.DataDir)
		if r.Code == 0 && strings.Contains(r.Stdout, `"reason":"locked"`) && strings.Contains(r.Stdout, "cut") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no proxy.disconnect event: %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
