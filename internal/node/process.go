package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warden-sh/warden/internal/pollwait"
)

// Timing of process teardown.
const (
	// killGrace is how long a hung-up process group gets before SIGKILL.
	killGrace = 2 * time.Second
	// revokeKillDelay is how long the processes of a revoked session (frozen
	// once the node has cut its connections) wait for their kill, so that
	// a node ending many sessions at once cuts all their connections first.
	revokeKillDelay = 250 * time.Millisecond
	// ptyDrain bounds waiting for PTY output after the shell exited while a
	// background process still holds the terminal.
	ptyDrain = time.Second
)

// proc is a started user process with its I/O plumbing.
type proc struct {
	cmd  *exec.Cmd
	ptmx *os.File // PTY mode
	tty  string   // PTY device name, e.g. /dev/pts/3

	// Pipe mode: the parent's ends.
	inW, outR, errR *os.File

	// cg is the session's cgroup, nil without; revoked tells, once the
	// run's context ended, whether access was revoked (kill everything).
	cg      *sessionCgroup
	revoked func() bool
	killed  bool // killAll ran

	// pidfd, the node's own (-1 where the kernel has none), polls
	// readable once the process exited: waiting for a session's process
	// then takes no OS thread.
	pidfd int

	closeOnce sync.Once
}

// procSpec describes a process to start.
type procSpec struct {
	path  string
	argv  []string
	env   []string
	dir   string
	user  *osUser
	pty   *ptyRequest // nil: pipes
	extra []*os.File  // ExtraFiles, fd 3...
	// cgroup, if set, is where the process starts; revoked as in proc.
	cgroup  *sessionCgroup
	revoked func() bool
}

// startProc starts spec. In PTY mode stdin/stdout/stderr are the terminal
// and the process is a session leader with it as controlling terminal; in
// pipe mode they are three pipes and the process leads its own group.
func (s *Server) startProc(spec procSpec) (*proc, error) {
	cmd := &exec.Cmd{
		Path:       spec.path,
		Args:       spec.argv,
		Env:        spec.env,
		Dir:        spec.dir,
		ExtraFiles: spec.extra,
	}
	p := &proc{cmd: cmd}
	if spec.pty != nil {
		ptmx, tty, err := openPTY()
		if err != nil {
			return nil, err
		}
		defer tty.Close()
		p.ptmx, p.tty = ptmx, tty.Name()
		if err := setWinsize(ptmx, spec.pty.Columns, spec.pty.Rows, spec.pty.WidthPx, spec.pty.HeightPx); err != nil {
			ptmx.Close()
			return nil, fmt.Errorf("set pty size: %w", err)
		}
		if s.uid == 0 {
			// Like sshd: the terminal belongs to the user, group tty, 0620.
			if err := os.Chown(tty.Name(), int(spec.user.UID), ttyGroup(spec.user.GID)); err != nil {
				ptmx.Close()
				return nil, fmt.Errorf("chown pty: %w", err)
			}
			if err := os.Chmod(tty.Name(), 0o620); err != nil {
				ptmx.Close()
				return nil, fmt.Errorf("chmod pty: %w", err)
			}
		}
		cmd.Env = append(cmd.Env, "SSH_TTY="+tty.Name())
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = s.sysProcAttr(spec.user, true)
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0 // the child's stdin
		if err := p.start(spec); err != nil {
			ptmx.Close()
			return nil, fmt.Errorf("start %s: %w", spec.path, err)
		}
		return p, nil
	}

	var parent, child []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	for range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(parent)
			closeAll(child)
			return nil, fmt.Errorf("pipe: %w", err)
		}
		if len(child) == 0 { // stdin: the child reads
			child, parent = append(child, r), append(parent, w)
		} else {
			child, parent = append(child, w), append(parent, r)
		}
	}
	p.inW, p.outR, p.errR = parent[0], parent[1], parent[2]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = child[0], child[1], child[2]
	cmd.SysProcAttr = s.sysProcAttr(spec.user, false)
	err := p.start(spec)
	closeAll(child)
	if err != nil {
		closeAll(parent)
		return nil, fmt.Errorf("start %s: %w", spec.path, err)
	}
	return p, nil
}

// start starts the process, in the session's cgroup if it has one.
func (p *proc) start(spec procSpec) error {
	p.cg, p.revoked = spec.cgroup, spec.revoked
	p.pidfd = -1
	if pidfdSupported() {
		p.cmd.SysProcAttr.PidFD = &p.pidfd
	}
	if p.cg != nil {
		p.cg.attr(p.cmd.SysProcAttr)
		defer p.cg.started()
	}
	err := p.cmd.Start()
	if err != nil && p.pidfd >= 0 {
		syscall.Close(p.pidfd)
		p.pidfd = -1
	}
	return err
}

// pidfdSupported reports whether the kernel gives pidfds (Linux 5.3):
// without, asking for one would fail every start.
var pidfdSupported = sync.OnceValue(func() bool {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return false
	}
	syscall.Close(fd)
	return true
})

// wait waits for the process to exit and reaps it. os/exec's Wait blocks
// an OS thread in waitid(2) until then, which for a node's long-lived
// sessions would be a thread each (and Go allows 10,000 in all): the wait
// for the exit itself is done by the runtime's poller on the pidfd.
func (p *proc) wait() {
	if p.pidfd >= 0 {
		waitReadable(p.pidfd)
		p.pidfd = -1
	}
	_ = p.cmd.Wait()
}

// waitReadable waits, without holding a thread, until fd (a pidfd, which
// it closes) polls readable. If the poller cannot take it, it returns at
// once: the caller then waits the ordinary way.
func waitReadable(fd int) {
	if err := unix.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = pollwait.Readable(rc)
}

// ttyGroup is the gid of group "tty", or fallback.
func ttyGroup(fallback uint32) int {
	if g, err := user.LookupGroup("tty"); err == nil {
		if n, err := strconv.Atoi(g.Gid); err == nil {
			return n
		}
	}
	return int(fallback)
}

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) error {
	if p.cmd.Process == nil {
		return errors.New("no process")
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// closeIO closes the parent's ends, unblocking any copy goroutines.
func (p *proc) closeIO() {
	p.closeOnce.Do(func() {
		for _, f := range []*os.File{p.ptmx, p.inW, p.outR, p.errR} {
			if f != nil {
				f.Close()
			}
		}
	})
}

// setSize resizes the PTY; no-op in pipe mode.
func (p *proc) setSize(w windowChange) error {
	if p.ptmx == nil {
		return nil
	}
	return setWinsize(p.ptmx, w.Columns, w.Rows, w.WidthPx, w.HeightPx)
}

// ioStreams connects the process to a channel-like peer.
type ioStreams struct {
	in     io.Reader // client -> process stdin
	out    io.Writer // process stdout (and PTY output) -> client
	errOut io.Writer // process stderr -> client
}

// run copies I/O and waits for the process. When ctx ends first (the
// channel or connection closed), the process group is hung up and, after a
// grace period, killed. It returns the process state once output is
// drained. wg tracks goroutines that may outlive run (stdin copying, which
// ends when the peer's stream ends).
func (p *proc) run(ctx context.Context, st ioStreams, wg *sync.WaitGroup) *os.ProcessState {
	var outWG sync.WaitGroup
	if p.ptmx != nil {
		outWG.Go(func() { _ = readAheadCopy(st.out, p.ptmx) })
		wg.Go(func() { _, _ = io.Copy(p.ptmx, st.in) })
	} else {
		outWG.Go(func() { _, _ = io.Copy(st.out, p.outR) })
		outWG.Go(func() { _, _ = io.Copy(st.errOut, p.errR) })
		wg.Go(func() {
			_, _ = io.Copy(p.inW, st.in)
			p.inW.Close()
		})
	}
	drained := make(chan struct{})
	go func() { outWG.Wait(); close(drained) }()

	waited := make(chan struct{})
	go func() { p.wait(); close(waited) }()

	select {
	case <-waited:
	case <-ctx.Done():
		if p.cg != nil && p.revoked() {
			p.killAll(waited)
		} else {
			p.hangup(waited)
		}
	}

	switch {
	case ctx.Err() != nil:
		p.closeIO()
	case p.ptmx != nil:
		// The shell exited; output ends with EIO unless a background job
		// still holds the terminal.
		select {
		case <-drained:
		case <-time.After(ptyDrain):
		case <-ctx.Done():
		}
		p.closeIO()
	default:
		// Like sshd: output ends when every holder of the pipes closed it.
		select {
		case <-drained:
		case <-ctx.Done():
			_ = p.signal(syscall.SIGHUP)
			p.closeIO()
		}
	}
	<-drained
	return p.cmd.ProcessState
}

// killAll kills every process of a session whose access was revoked,
// wherever it went in the process tree; hangup if the kernel refused.
func (p *proc) killAll(waited <-chan struct{}) {
	// The processes are frozen right after the cut (conn.terminate): the
	// node cuts its other revoked connections before it spends CPU on
	// tearing them down.
	time.Sleep(revokeKillDelay)
	if err := p.cg.kill(); err != nil {
		p.hangup(waited)
		return
	}
	p.killed = true
	p.closeIO()
	select {
	case <-waited:
	case <-time.After(killGrace):
		_ = p.signal(syscall.SIGKILL) // not expected: SIGKILL cannot be caught
		<-waited
	}
}

// releaseCgroup removes the session's cgroup once the process ended. If
// access was revoked, whatever is left in it is killed, also when the
// process had exited by itself (its jobs may be frozen). Otherwise the
// user's detached jobs keep it, and kept is true.
func (p *proc) releaseCgroup() (kept bool) {
	if p.cg == nil {
		return false
	}
	if !p.killed && p.revoked() && p.cg.killRest() == nil {
		p.killed = true
	}
	return p.cg.remove(p.killed)
}

// hangup sends SIGHUP to the group, then SIGKILL if it did not exit.
func (p *proc) hangup(waited <-chan struct{}) {
	_ = p.signal(syscall.SIGHUP)
	_ = p.signal(syscall.SIGCONT)
	if p.ptmx != nil {
		p.closeIO() // closing the master also hangs up the terminal
	}
	select {
	case <-waited:
	case <-time.After(killGrace):
		_ = p.signal(syscall.SIGKILL)
		<-waited
	}
}

// exitInfo extracts the exit code (128+signal when killed by a signal) and
// the signal, if any.
func exitInfo(ps *os.ProcessState) (code int, sig syscall.Signal, core bool) {
	if ps == nil {
		return 255, 0, false
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), ws.Signal(), ws.CoreDump()
	}
	return ps.ExitCode(), 0, false
}
