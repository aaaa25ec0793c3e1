package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
	"golang.org/x/sys/unix"
)

func TestCgroupDiscovery(t *testing.T) {
	dir := t.TempDir()
	mountinfo := filepath.Join(dir, "mountinfo")
	cgroup := filepath.Join(dir, "cgroup")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A hybrid layout (cpu a v1 controller, v2 in "unified"), as on this
	// project's CI machines.
	write(mountinfo, `22 1 0:20 / /sys rw,nosuid - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
`)
	v2, v1cpu, err := cgroupMounts(mountinfo)
	if err != nil || v2 != "/sys/fs/cgroup/unified" || v1cpu != "/sys/fs/cgroup/cpu,cpuacct" {
		t.Fatalf("hybrid mounts: %q %q %v", v2, v1cpu, err)
	}
	write(cgroup, "3:cpuset:/\n2:cpu,cpuacct:/system.slice/warden.service\n0::/system.slice/warden.service\n")
	p2, p1, err := ownCgroups(cgroup)
	if err != nil || p2 != "/system.slice/warden.service" || p1 != "/system.slice/warden.service" {
		t.Fatalf("hybrid cgroups: %q %q %v", p2, p1, err)
	}

	// Unified only.
	write(mountinfo, "31 22 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate\n")
	if v2, v1cpu, err := cgroupMounts(mountinfo); err != nil || v2 != "/sys/fs/cgroup" || v1cpu != "" {
		t.Fatalf("v2 mounts: %q %q %v", v2, v1cpu, err)
	}
	// v1 only: no v2 path, refused.
	write(cgroup, "2:cpu,cpuacct:/\n1:name=systemd:/\n")
	if _, _, err := ownCgroups(cgroup); err == nil {
		t.Fatal("a process without a cgroup v2 path was accepted")
	}
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// sessionOf returns pid's session id, or 0.
func sessionOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 4 {
		return 0
	}
	sid, _ := strconv.Atoi(f[3]) // state ppid pgrp session
	return sid
}

// sessionCgroupEvents returns the cgroup.events file of pid's session
// cgroup.
func sessionCgroupEvents(t *testing.T, pid int) string {
	t.Helper()
	dir, err := SessionCgroupsDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if path, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok && strings.Contains(path, "/"+sessionsCgroupDir+"/") {
			return filepath.Join(dir, filepath.Base(path), "cgroup.events")
		}
	}
	t.Fatalf("pid %d is in no session cgroup: %s", pid, b)
	return ""
}

// watchWrites reports the files written in dir from now on, in order
// (inotify, which keeps every event until it is read): the order of the
// node's writes to a cgroup's control files, however late the test looks.
func watchWrites(t *testing.T, dir string) (written func() []string) {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MODIFY); err != nil {
		t.Fatal(err)
	}
	var names []string
	return func() []string {
		buf := make([]byte, 64*1024)
		for {
			n, err := unix.Read(fd, buf)
			if err == unix.EAGAIN {
				return names
			}
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				if ev.Mask&unix.IN_MODIFY != 0 {
					names = append(names, strings.TrimRight(string(name), "\x00"))
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

// TestTerminateEndsSessionProcesses: a revocation (Terminate) ends the
// session's process group either way; with session cgroups it also ends
// what left the group (setsid).
func TestTerminateEndsSessionProcesses(t *testing.T) {
	_, cgErr := SessionCgroupsDir()
	if cgErr != nil {
		t.Logf("session cgroups are unavailable here (%v): auto must behave like off", cgErr)
	}
	for _, mode := range []string{CgroupsAuto, CgroupsOff} {
		withCgroups := mode == CgroupsAuto && cgErr == nil
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.SessionCgroups = mode })
			login := currentLogin(t)
			id := e.newIdentity(certOpts{principals: []string{login}, ttl: time.Hour})
			cmd := exec.Command("ssh", append(append(e.sshOpts(id), "-p", strconv.Itoa(e.addr.Port), login+"@127.0.0.1"),
				"setsid sleep infinity </dev/null >/dev/null 2>&1 & a=$!; sleep infinity & echo pids $a $!; wait")...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var escaped, inGroup int
			if _, err := fmt.Fscanf(out, "pids %d %d\n", &escaped, &inGroup); err != nil {
				t.Fatalf("session output: %v", err)
			}
			t.Cleanup(func() {
				_ = syscall.Kill(escaped, syscall.SIGKILL)
				_ = syscall.Kill(inGroup, syscall.SIGKILL)
			})
			// The escaped one must have left the group before the hangup.
			for deadline := patience.Deadline(t); sessionOf(escaped) != escaped; {
				if time.Now().After(deadline) {
					t.Fatal("setsid did not take effect")
				}
				time.Sleep(5 * time.Millisecond)
			}
			var written func() []string
			if withCgroups {
				written = watchWrites(t, filepath.Dir(sessionCgroupEvents(t, escaped)))
			}
			if n := e.srv.Terminate(func(ConnInfo) (string, string) { return "locked", "access revoked" }); n != 1 {
				t.Fatalf("Terminate ended %d connections", n)
			}
			_ = cmd.Wait()
			if !strings.Contains(stderr.String(), "access revoked") {
				t.Errorf("stderr %q lacks the message", stderr.String())
			}
			deadline := patience.Deadline(t)
			for alive(inGroup) || (withCgroups && alive(escaped)) {
				if time.Now().After(deadline) {
					t.Fatalf("still running long after Terminate: in the group %v, escaped %v", alive(inGroup), alive(escaped))
				}
				time.Sleep(20 * time.Millisecond)
			}
			if withCgroups {
				// Stopped right after the cut, before the kill came.
				w := written()
				freeze, kill := slices.Index(w, "cgroup.freeze"), slices.Index(w, "cgroup.kill")
				if freeze < 0 || kill < 0 || freeze > kill {
					t.Errorf("the session cgroup's writes were %q: want cgroup.freeze before cgroup.kill", w)
				}
			}
			if !withCgroups && !alive(escaped) {
				t.Error("without cgroups a process that left the session's group was expected to survive (the limitation they lift)")
			}
			e.audit.wait(t, audit.SessionEnd, func(ev audit.Event) bool {
				killed, _ := ev.Fields["processes_killed"].(bool)
				return ev.Fields["reason"] == "locked" && killed == withCgroups
			})
		})
	}
}
