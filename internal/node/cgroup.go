package node

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Session cgroups. Where the node may (it runs as root on Linux with a
// writable cgroup v2 hierarchy), every session's processes start inside a
// cgroup of their own (clone3 with CLONE_INTO_CGROUP: no process escapes
// the placement, however early it forks). A session ended because access
// was revoked (a lock, a role change: Server.Terminate) then loses every
// process it started: frozen right after the cut (cgroup.freeze; behind the
// node's other cuts, behindQueue), killed a moment later (cgroup.kill), also those that left its process group (setsid, daemons)
// or ignore SIGHUP (nohup). Sessions that
// end for other reasons (the client left, idle timeout, an expired
// certificate, a stale lock view: Server.Disconnect) hang up their process
// group as sshd does, and background jobs the user detached survive; the
// node remembers whose they are (detached.go), so that a later revocation
// of that user's access kills them too.
//
// Before the kill, a revoked session's processes lose their CPU share (cgroup
// v2 cpu.idle or cpu.weight, or an idle cgroup in a v1 cpu hierarchy), so
// that on a node ending many sessions at once the processes being torn
// down do not hold up cutting the others off.

// Cgroup modes, Config.SessionCgroups.
const (
	CgroupsAuto = "auto" // use them where available (the default)
	CgroupsOff  = "off"  // never: sessions are ended by process group only
)

// sessionsCgroupDir is the cgroup, under the node's own, that holds one
// cgroup per session.
const sessionsCgroupDir = "warden-sessions"

// cgroupHier is where session cgroups live on this machine.
type cgroupHier struct {
	base string // <cgroup2 mount><own cgroup>/warden-sessions
	// cpuWeight: cpu is enabled for the session cgroups (cpu.weight).
	cpuWeight bool
	// cpuV1 is, when cpu is a cgroup v1 controller (a hybrid setup), the
	// v1 cpu cgroup where revoked sessions' processes are moved to die: it
	// runs only on otherwise idle CPU. "" otherwise. (One cgroup for all:
	// a v1 cpu cgroup per session would cost the scheduler on every
	// switch.)
	cpuV1 string
	// v1procs is cpuV1's cgroup.procs, open for writing.
	v1procs *os.File
}

var (
	cgroupsOnce sync.Once
	cgroupsHier *cgroupHier
	cgroupsErr  error
	// cgroupsLogOnce: why they are unavailable is logged once per process.
	cgroupsLogOnce sync.Once
)

// detectCgroups finds (once per process) where session cgroups can live.
func detectCgroups() (*cgroupHier, error) {
	cgroupsOnce.Do(func() {
		cgroupsHier, cgroupsErr = findCgroups("/proc/self/mountinfo", "/proc/self/cgroup")
		if cgroupsErr == nil {
			sweepCgroups(cgroupsHier)
		}
	})
	return cgroupsHier, cgroupsErr
}

// SessionCgroupsDir returns the cgroup that holds session cgroups on this
// machine, or why there is none (nodes then end sessions by process
// group).
func SessionCgroupsDir() (string, error) {
	h, err := detectCgroups()
	if err != nil {
		return "", err
	}
	return h.base, nil
}

// findCgroups reads the mount table and this process's cgroups and creates
// the sessions' parent cgroup.
func findCgroups(mountinfo, selfCgroup string) (*cgroupHier, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the node does not run as root")
	}
	v2mnt, v1cpu, err := cgroupMounts(mountinfo)
	if err != nil {
		return nil, err
	}
	if v2mnt == "" {
		return nil, errors.New("no cgroup v2 hierarchy is mounted")
	}
	v2path, v1cpuPath, err := ownCgroups(selfCgroup)
	if err != nil {
		return nil, err
	}
	h := &cgroupHier{base: filepath.Join(v2mnt, v2path, sessionsCgroupDir)}
	if err := os.Mkdir(h.base, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", h.base, err)
	}
	if _, err := os.Stat(filepath.Join(h.base, "cgroup.kill")); err != nil {
		return nil, fmt.Errorf("cgroup.kill is not supported (Linux 5.14 or later is needed): %w", err)
	}
	// cpu.weight for the session cgroups, where the cpu controller is
	// available to them; best effort.
	if ctl, err := os.ReadFile(filepath.Join(h.base, "cgroup.controllers")); err == nil && slices.Contains(strings.Fields(string(ctl)), "cpu") {
		h.cpuWeight = os.WriteFile(filepath.Join(h.base, "cgroup.subtree_control"), []byte("+cpu"), 0) == nil
	}
	if !h.cpuWeight && v1cpu != "" && v1cpuPath != "" {
		dir := filepath.Join(v1cpu, v1cpuPath, sessionsCgroupDir)
		if err := os.Mkdir(dir, 0o755); err == nil || errors.Is(err, os.ErrExist) {
			if os.WriteFile(filepath.Join(dir, "cpu.idle"), []byte("1"), 0) == nil ||
				os.WriteFile(filepath.Join(dir, "cpu.shares"), []byte("2"), 0) == nil {
				if f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0); err == nil {
					h.cpuV1, h.v1procs = dir, f
				}
			}
		}
	}
	return h, nil
}

// cgroupMounts returns the cgroup v2 mount point and the cgroup v1 cpu
// controller's, if any.
func cgroupMounts(mountinfo string) (v2, v1cpu string, err error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 {
			continue
		}
		switch sf[0] {
		case "cgroup2":
			if v2 == "" {
				v2 = pf[4]
			}
		case "cgroup":
			if v1cpu == "" && slices.Contains(strings.Split(sf[2], ","), "cpu") {
				v1cpu = pf[4]
			}
		}
	}
	return v2, v1cpu, sc.Err()
}

// ownCgroups returns this process's cgroup v2 path and its cgroup v1 cpu
// path (if cpu is a v1 controller).
func ownCgroups(path string) (v2, v1cpu string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	for line := range strings.Lines(string(data)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case slices.Contains(strings.Split(parts[1], ","), "cpu"):
			v1cpu = parts[2]
		}
	}
	if v2 == "" {
		return "", "", errors.New("this process has no cgroup v2 path")
	}
	return v2, v1cpu, nil
}

// sweepCgroups removes session cgroups left empty by an earlier run.
// Non-empty ones (a session's detached background jobs) stay, and so do
// recent ones: another node agent on this machine may be starting a
// session in one.
func sweepCgroups(h *cgroupHier) {
	entries, _ := os.ReadDir(h.base)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && e.IsDir() && time.Since(fi.ModTime()) > time.Minute {
			_ = syscall.Rmdir(filepath.Join(h.base, e.Name()))
		}
	}
}

// sessionCgroup is one session's cgroup.
type sessionCgroup struct {
	h   *cgroupHier
	dir string
	fd  *os.File // open until the process started
	// Opened in advance, so that the kill, which may come for many
	// sessions at once, is a write or two. mu orders freeze (from the
	// terminating goroutine) with remove (from the session's).
	mu         sync.Mutex
	killFile   *os.File // cgroup.kill
	freezeFile *os.File // cgroup.freeze
	procsFile  *os.File // cgroup.procs, with cpuV1
}

// newSessionCgroup creates the cgroup for the session named id.
func newSessionCgroup(h *cgroupHier, id string) (*sessionCgroup, error) {
	dir := filepath.Join(h.base, id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create session cgroup: %w", err)
	}
	cg := &sessionCgroup{h: h, dir: dir}
	var err error
	if cg.fd, err = os.Open(dir); err == nil {
		cg.killFile, err = os.OpenFile(filepath.Join(dir, "cgroup.kill"), os.O_WRONLY, 0)
	}
	if err == nil {
		cg.freezeFile, err = os.OpenFile(filepath.Join(dir, "cgroup.freeze"), os.O_WRONLY, 0)
	}
	if err == nil && h.cpuV1 != "" {
		cg.procsFile, err = os.Open(filepath.Join(dir, "cgroup.procs"))
	}
	if err != nil {
		cg.remove(false)
		return nil, fmt.Errorf("open session cgroup: %w", err)
	}
	return cg, nil
}

// attr makes a process start inside the cgroup.
func (cg *sessionCgroup) attr(a *syscall.SysProcAttr) {
	a.UseCgroupFD = true
	a.CgroupFD = int(cg.fd.Fd())
}

// started is called once the session's first process started, or failed
// to.
func (cg *sessionCgroup) started() {
	cg.fd.Close()
	cg.fd = nil
}

// freeze stops every process in the cgroup from running (cgroup.freeze);
// kill still ends them.
func (cg *sessionCgroup) freeze() {
	cg.mu.Lock()
	defer cg.mu.Unlock()
	if cg.freezeFile != nil {
		_, _ = cg.freezeFile.Write([]byte("1"))
	}
}

// kill takes the session's CPU share away and kills every process in the
// cgroup (SIGKILL), wherever it moved in the process tree.
func (cg *sessionCgroup) kill() error {
	// cpu.idle (Linux 5.15): scheduled only when nothing else wants the
	// CPU; else the smallest weight.
	switch {
	case cg.h.cpuWeight:
		if os.WriteFile(filepath.Join(cg.dir, "cpu.idle"), []byte("1"), 0) != nil {
			_ = os.WriteFile(filepath.Join(cg.dir, "cpu.weight"), []byte("1"), 0)
		}
	case cg.h.cpuV1 != "":
		// The processes to move: enough for any interactive session; the
		// kill below reaches them all anyway.
		var buf [4096]byte
		if n, err := cg.procsFile.ReadAt(buf[:], 0); n > 0 && (err == nil || err == io.EOF) {
			pids := strings.Fields(string(buf[:n]))
			if n == len(buf) {
				pids = pids[:len(pids)-1] // may be cut short
			}
			for _, pid := range pids {
				_, _ = cg.h.v1procs.Write([]byte(pid))
			}
		}
	}
	_, err := cg.killFile.Write([]byte("1"))
	return err
}

// remove deletes the cgroup once it is empty and reports whether it stays:
// a session's detached background jobs (after an ordinary end) keep it
// until they exit (the node's next start removes it then). After a kill its
// processes may take a moment to exit: then it retries for a while in the
// background.
func (cg *sessionCgroup) remove(killed bool) (kept bool) {
	cg.mu.Lock()
	for _, f := range []*os.File{cg.fd, cg.killFile, cg.freezeFile, cg.procsFile} {
		if f != nil {
			f.Close()
		}
	}
	cg.fd, cg.killFile, cg.freezeFile, cg.procsFile = nil, nil, nil, nil
	cg.mu.Unlock()
	if cg.rmdir() {
		return false
	}
	if !killed {
		return true
	}
	cg.retryRemove()
	return false
}

// retryRemove removes the cgroup once the processes killed in it exited.
func (cg *sessionCgroup) retryRemove() {
	go func() {
		for range 40 {
			time.Sleep(50 * time.Millisecond)
			if cg.rmdir() {
				return
			}
		}
	}()
}

// killDetached kills the jobs left in the cgroup of an ended session and
// returns how many processes there were.
func (cg *sessionCgroup) killDetached() (int, error) {
	procs, _ := os.ReadFile(filepath.Join(cg.dir, "cgroup.procs"))
	n := len(strings.Fields(string(procs)))
	if err := cg.killRest(); err != nil {
		return n, err
	}
	cg.retryRemove()
	return n, nil
}

// killRest kills whatever is left in the cgroup.
func (cg *sessionCgroup) killRest() error {
	return os.WriteFile(filepath.Join(cg.dir, "cgroup.kill"), []byte("1"), 0)
}

// rmdir removes the session's cgroup; true when it is gone.
func (cg *sessionCgroup) rmdir() bool {
	err := syscall.Rmdir(cg.dir)
	return err == nil || errors.Is(err, syscall.ENOENT)
}
