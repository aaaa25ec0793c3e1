//go:build integration

package clustertest

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/testkit"
)

// liveCommand is the remote command of a live session: it says when it
// runs, then runs until something ends it.
const liveCommand = "echo started; sleep infinity"

// startLive starts `ssh args...` whose remote command prints "started"
// (liveCommand) and waits until it runs; if ssh ends first, it returns an
// error with what ssh said.
func startLive(t *testing.T, args []string) (*bgProcess, error) {
	t.Helper()
	p := startBackground(t, "ssh", args...)
	code := 0
	ended := false
	testkit.WaitFor(t, "the session to start", func() bool {
		if strings.Contains(p.out.String(), "started") {
			return true
		}
		select {
		case code = <-p.done:
			ended = true
		default:
		}
		return ended
	})
	if ended {
		return nil, fmt.Errorf("ssh ended (exit %d) before the session started: %s", code, p.err.String())
	}
	return p, nil
}

// liveSession starts a live session (startLive) and returns a function
// that waits for it to end and reports how, and how long after arm was
// called.
func liveSession(t *testing.T, args []string) (wait func() (Result, time.Duration), arm func()) {
	t.Helper()
	p, err := startLive(t, args)
	if err != nil {
		t.Fatal(err)
	}
	return liveWait(t, p)
}

func liveWait(t *testing.T, p *bgProcess) (wait func() (Result, time.Duration), arm func()) {
	var at time.Time
	return func() (Result, time.Duration) {
			t.Helper()
			code := p.wait(t)
			return Result{Stdout: p.out.String(), Stderr: p.err.String(), Code: code}, time.Since(at)
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
			wait, arm := liveSession(t, sshArgs(cfg, osLogin+"@prod1", liveCommand))
			if tc.flag == "--user" {
				// A command without a terminal is a live session too.
				testkit.WaitFor(t, "the command in sessions ls", func() bool {
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
			// The session never ends by itself: only the lock ended it.
			t.Logf("lock %s=%s ended the live session in %s", tc.flag, tc.value, took.Round(time.Millisecond))
			if r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@prod1", "true")...); r.Code == 0 {
				t.Fatalf("new ssh allowed while locked: %s", r)
			}
			if r := c.Warden(admin, nil, "unlock", id); r.Code != 0 {
				t.Fatalf("unlock: %s", r)
			}
			// Access comes back by itself: no restart, no cache expiry
			// (the retry covers the watch's delivery to the node).
			testkit.WaitFor(t, "ssh access after the unlock", func() bool {
				return Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@prod1", "true")...).Code == 0
			})
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
			testkit.WaitFor(t, typ+` with "reason":"locked"`, func() bool {
				r := c.Warden(admin, nil, "audit", "search", "--type", typ, "-o", "json")
				return strings.Contains(r.Stdout, `"reason":"locked"`)
			})
		}
		// Ended sessions leave the live list.
		testkit.WaitFor(t, "an empty session list", func() bool {
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
	idleRole := func(idle time.Duration) {
		c.ApplyRoles(fmt.Sprintf(`
kind: role
metadata: {name: idle}
spec:
  options: {client_idle_timeout: %s}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`, idle))
	}
	idleRole(2 * time.Second)
	c.ApplyRoles(`
kind: role
metadata: {name: temp}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`)
	// The sessions run until something ends them: each end below is the
	// expiry, the idle timeout or the role change. A certificate or an
	// idle timeout so short that the machine could not start the session
	// in time is doubled and tried again.
	t.Run("certificate expiry", func(t *testing.T) {
		u := c.AddUser("shortlived", []string{"access"}, []string{osLogin})
		for ttl := 4 * time.Second; ; ttl *= 2 {
			issued := time.Now()
			home := c.Login(u, "--ttl", ttl.String())
			cfg, err := c.sshConfig(home)
			var p *bgProcess
			if err == nil {
				p, err = startLive(t, sshArgs(cfg, osLogin+"@web1", liveCommand))
			}
			// (Certificates end on a whole second: up to one before.)
			if err != nil && time.Since(issued) > ttl-time.Second {
				t.Logf("the certificate (%s) expired before the session started; again with a longer one", ttl)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			wait, arm := liveWait(t, p)
			arm()
			r, _ := wait()
			if r.Code == 0 || !strings.Contains(r.Stderr, "certificate expired") {
				t.Fatalf("session outlived its certificate: %s", r)
			}
			return
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		u := c.AddUser("idler", []string{"idle"}, []string{osLogin})
		home := c.Login(u)
		for idle := 2 * time.Second; ; idle *= 2 {
			start := time.Now()
			p, err := startLive(t, sshArgs(c.SSHConfig(home), osLogin+"@web1", liveCommand))
			if err != nil && time.Since(start) > idle {
				t.Logf("the idle timeout (%s) ended the session before it started; again with a longer one", idle)
				idleRole(2 * idle)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			wait, arm := liveWait(t, p)
			arm()
			r, took := wait()
			if r.Code == 0 || !strings.Contains(r.Stderr, "idle") {
				t.Fatalf("idle session: %s after %s", r, took)
			}
			t.Logf("the idle timeout (%s) ended the session %s after it started", idle, took.Round(time.Millisecond))
			return
		}
	})
	t.Run("role deleted", func(t *testing.T) {
		u := c.AddUser("temper", []string{"temp"}, []string{osLogin})
		home := c.Login(u)
		wait, arm := liveSession(t, sshArgs(c.SSHConfig(home), osLogin+"@web1", liveCommand))
		arm()
		if r := c.Warden(t.TempDir(), nil, "rm", "role/temp"); r.Code != 0 {
			t.Fatalf("rm role: %s", r)
		}
		r, took := wait()
		if r.Code == 0 || !strings.Contains(r.Stderr, "no longer allows") {
			t.Fatalf("session survived its role: %s after %s", r, took)
		}
		t.Logf("the role's removal ended the session in %s", took.Round(time.Millisecond))
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
	n := c.StartNode("edge1", nil, func(cfg *nodeagent.Config) {
		cfg.Listen = direct
		cfg.LockStaleness = 3 * time.Second
	})
	c.WaitForNodes(1)
	strictUser := c.AddUser("strictu", []string{"strict"}, []string{osLogin})
	looseUser := c.AddUser("looseu", []string{"access"}, []string{osLogin})
	strictHome, looseHome := c.Login(strictUser), c.Login(looseUser)
	// Sessions straight to the node's own port, so that stopping auth and
	// the proxy does not cut them by itself. Neither ends by itself: the
	// strict one runs until the node ends it, the best_effort one until
	// the test ends its input, after the node ended the strict one.
	waitStrict, armStrict := liveSession(t, directArgs(strictHome, n.Addr(), n.ID(), osLogin+"@edge1", liveCommand))
	loose, err := startLive(t, directArgs(looseHome, n.Addr(), n.ID(), osLogin+"@edge1", "echo started; read line; echo survived"))
	if err != nil {
		t.Fatal(err)
	}
	c.Proc.Close() // auth and proxy are gone
	armStrict()
	r, took := waitStrict()
	if r.Code == 0 || !strings.Contains(r.Stderr, "lock_mode strict") {
		t.Fatalf("strict session: %s", r)
	}
	t.Logf("strict session ended %s after auth stopped", took.Round(time.Millisecond))
	loose.stdin.Close()
	if code := loose.wait(t); code != 0 || !strings.Contains(loose.out.String(), "survived") {
		t.Fatalf("best_effort session did not survive: exit %d\nstdout: %s\nstderr: %s", code, loose.out.String(), loose.err.String())
	}
}

// TestProxyCutsLockedConnections: the proxy also ends relayed connections
// that a new lock matches, once its grace period passes, so a session ends
// even when its node is slow to act. With no grace the proxy acts first
// (the node learns the lock over its watch; a retry covers the cases
// where the node wins the race, however many a loaded machine makes).
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
		{"data connection", sshArgs(cfg, osLogin+"@cut1", liveCommand)},
		{"ssh -J", sshArgs(jcfg, "-J", "wjump", osLogin+"@cut1", liveCommand)},
	} {
		t.Run(path.name, func(t *testing.T) {
			deadline := patience.Deadline(t)
			for {
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
				// The node takes the user back before the next try.
				testkit.WaitFor(t, "ssh access after the unlock", func() bool {
					return Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@cut1", "true")...).Code == 0
				})
				if metricValue(t, c, "warden_proxy_lock_disconnects_total") > before {
					t.Logf("the proxy cut the session %s after the lock", took.Round(time.Millisecond))
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the proxy never cut a locked connection")
				}
			}
		})
	}
	// The cut is audited with its reason.
	testkit.WaitFor(t, "proxy.disconnect event", func() bool {
		r := c.Warden(admin, nil, "audit", "search", "--type", "proxy.disconnect", "--user", "mallory", "-o", "json", "--data-dir", c.DataDir)
		return r.Code == 0 && strings.Contains(r.Stdout, `"reason":"locked"`) && strings.Contains(r.Stdout, "cut")
	})
}
