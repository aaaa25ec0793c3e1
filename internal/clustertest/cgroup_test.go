//go:build integration

package clustertest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/warden-sh/warden/internal/node"
	"github.com/warden-sh/warden/internal/testkit"
)

// sleepers returns the pids of live `sleep ARG` processes.
func sleepers(arg string) []int {
	want := []byte("sleep\x00" + arg + "\x00")
	var pids []int
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.HasSuffix(b, want) {
			continue
		}
		// A zombie has an empty cmdline, so this one is alive.
		var pid int
		fmt.Sscanf(strings.TrimPrefix(p, "/proc/"), "%d/", &pid)
		pids = append(pids, pid)
	}
	return pids
}

// TestLockKillsDetachedProcesses: a lock ends every process the session
// started, also those that left its process group (setsid) or ignore the
// hangup (nohup), and the jobs the user's earlier sessions left running; an
// ordinary end leaves a detached job running, as sshd does, and another
// user's jobs are not touched.
func TestLockKillsDetachedProcesses(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "cg1"})
	u := c.AddUser("escaper", []string{"access"}, []string{osLogin})
	other := c.AddUser("bystander", []string{"access"}, []string{osLogin})
	cfg := c.SSHConfig(c.Login(u))
	otherCfg := c.SSHConfig(c.Login(other))
	admin := t.TempDir()
	base := 7_000_000 + os.Getpid()%1_000_000*4
	setsidArg, nohupArg, keptArg, otherArg := fmt.Sprint(base), fmt.Sprint(base+1), fmt.Sprint(base+2), fmt.Sprint(base+3)
	t.Cleanup(func() {
		for _, a := range []string{setsidArg, nohupArg, keptArg, otherArg} {
			for _, pid := range sleepers(a) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	// Ordinary ends: the users' nohup jobs survive their logout.
	for _, job := range []struct{ cfg, arg string }{{cfg, keptArg}, {otherCfg, otherArg}} {
		if r := Run(t, nil, "ssh", sshArgs(job.cfg, osLogin+"@cg1", "nohup sleep "+job.arg+" >/dev/null 2>&1 &")...); r.Code != 0 {
			t.Fatalf("ssh: %s", r)
		}
	}
	testkit.WaitFor(t, "the detached jobs running", func() bool {
		return len(sleepers(keptArg)) == 1 && len(sleepers(otherArg)) == 1
	})

	wait, arm := liveSession(t, sshArgs(cfg, osLogin+"@cg1",
		"setsid sleep "+setsidArg+" </dev/null >/dev/null 2>&1 & nohup sleep "+nohupArg+" </dev/null >/dev/null 2>&1 & "+liveCommand))
	testkit.WaitFor(t, "the session's escaped processes running", func() bool {
		return len(sleepers(setsidArg)) == 1 && len(sleepers(nohupArg)) == 1
	})
	arm()
	c.Warden(admin, nil, "lock", "--user", "escaper", "--message", "contained")
	if r, _ := wait(); r.Code == 0 || !strings.Contains(r.Stderr, "contained") {
		t.Fatalf("locked session ended wrongly: %s", r)
	}
	if _, err := node.SessionCgroupsDir(); err != nil {
		// Without session cgroups the node ends the process group only
		// (the nohup job gets SIGKILL after the hangup's grace): check
		// that, and that what left the group survives, as documented.
		t.Logf("session cgroups are unavailable here (%v): checking the process-group fallback", err)
		testkit.WaitFor(t, "the session's process group gone", func() bool { return len(sleepers(nohupArg)) == 0 })
		if len(sleepers(setsidArg)) != 1 || len(sleepers(keptArg)) != 1 || len(sleepers(otherArg)) != 1 {
			t.Fatal("without cgroups, processes outside the session's group were expected to survive")
		}
		return
	}
	testkit.WaitFor(t, "every process of the locked user gone", func() bool {
		return len(sleepers(setsidArg)) == 0 && len(sleepers(nohupArg)) == 0 && len(sleepers(keptArg)) == 0
	})
	if len(sleepers(otherArg)) != 1 {
		t.Fatal("the lock on one user killed another user's job")
	}
	testkit.WaitFor(t, "session.end with processes_killed", func() bool {
		r := c.Warden(admin, nil, "audit", "search", "--type", "session.end", "--user", "escaper", "-o", "json")
		return strings.Contains(r.Stdout, `"processes_killed":true`) && strings.Contains(r.Stdout, `"reason":"locked"`)
	})
	testkit.WaitFor(t, "session.jobs_killed for the earlier session's job", func() bool {
		r := c.Warden(admin, nil, "audit", "search", "--type", "session.jobs_killed", "-o", "json")
		return strings.Contains(r.Stdout, `"user":"escaper"`) && strings.Contains(r.Stdout, `"processes":1`) &&
			!strings.Contains(r.Stdout, "bystander")
	})
}
