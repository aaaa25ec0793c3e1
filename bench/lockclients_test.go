package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/pollwait"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/tcptest"
)

// The lock fan-out's simulated users run in a child process of their own
// (this binary, re-executed) at idle CPU priority: real users' clients run
// on their own machines, so theirs must not be CPU that the nodes and the
// proxy wait for on this one. A session's end is the moment its end of
// data (the channel's EOF, after the lock's message) reaches the client's
// socket: the kernel's receive time (SO_TIMESTAMPNS) of the read, on that
// user's own connection to the proxy, that delivered it. Only what the
// client software does after that is left out (its own close, and the
// proxy's answer to that, wait for the idle-priority client).

// lockClientsEnv names the config file of a lock-clients child process.
const lockClientsEnv = "WARDEN_BENCH_LOCK_CLIENTS"

// lockClientsConfig tells the child which sessions to open.
type lockClientsConfig struct {
	Proxy   string   `json:"proxy"`   // the proxy's SSH address
	Profile string   `json:"profile"` // the user's logged-in client profile
	User    string   `json:"user"`
	Login   string   `json:"login"`
	Nodes   []string `json:"nodes"` // one session on each
	// Forward, if set, makes each session a port forward to this address
	// (no process); else a shell session running `sleep infinity`, whose stderr
	// must show Message at its end.
	Forward string `json:"forward,omitempty"`
	Message string `json:"message,omitempty"`
}

// lockClientsResult is the child's report once every session ended.
type lockClientsResult struct {
	// Arrived is, per session, when its end reached the client's socket
	// (Unix ns); Seen when the idle-priority client got to see it.
	Arrived []int64 `json:"arrived"`
	Seen    []int64 `json:"seen"`
}

// maybeRunLockClients runs this process as the lock fan-out's clients if
// it was started as such, and reports whether it was.
func maybeRunLockClients() bool {
	path := os.Getenv(lockClientsEnv)
	if path == "" {
		return false
	}
	if err := runLockClients(path, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lock clients:", err)
		os.Exit(1)
	}
	return true
}

// runLockClients opens the sessions, writes "ready", and once every
// session ended (after the parent's lock) writes the result as JSON.
func runLockClients(path string, out io.Writer) error {
	if err := idlePriority(); err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg lockClientsConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return err
	}
	p, err := client.LoadProfile(cfg.Profile)
	if err != nil {
		return err
	}
	signer, _, err := p.Signer()
	if err != nil {
		return err
	}
	n := len(cfg.Nodes)
	ends := make([]*atomic.Int64, n)
	waits := make([]func(), n)
	stderrs := make([]*bytes.Buffer, n)
	errs := make(chan error, n)
	inParallel(n, func(i int) {
		var err error
		ends[i], waits[i], stderrs[i], err = openLockSession(cfg, signer, cfg.Nodes[i])
		if err != nil {
			errs <- fmt.Errorf("session on %s: %w", cfg.Nodes[i], err)
		}
	})
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if _, err := fmt.Fprintln(out, "ready"); err != nil {
		return err
	}
	res := lockClientsResult{Arrived: make([]int64, n), Seen: make([]int64, n)}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			waits[i]()
			res.Seen[i] = time.Now().UnixNano()
			res.Arrived[i] = ends[i].Load()
		})
	}
	wg.Wait()
	for i, e := range stderrs {
		if e != nil && (!strings.Contains(e.String(), "warden: ") || !strings.Contains(e.String(), cfg.Message)) {
			return fmt.Errorf("the session on %s ended without the lock's message %q on stderr: %q", cfg.Nodes[i], cfg.Message, e.String())
		}
	}
	return json.NewEncoder(out).Encode(res)
}

// openLockSession opens one user's connection to the proxy and, through it
// (as `ssh -J`), a session on node. end is set to the receive time of the
// channel's EOF; wait returns once the session ended; stderr is the shell
// session's, nil for a forward.
func openLockSession(cfg lockClientsConfig, signer ssh.Signer, node string) (end *atomic.Int64, wait func(), stderr *bytes.Buffer, err error) {
	nc, err := net.DialTimeout("tcp", cfg.Proxy, 10*time.Second)
	if err != nil {
		return nil, nil, nil, err
	}
	// Everything runs over nc: closing it undoes a failed start.
	defer func() {
		if err != nil {
			nc.Close()
		}
	}()
	rx, err := newRxConn(nc)
	if err != nil {
		return nil, nil, nil, err
	}
	jump, err := sshClientOver(rx, cfg.Proxy, cfg.User, signer)
	if err != nil {
		return nil, nil, nil, err
	}
	ch, err := jump.Dial("tcp", net.JoinHostPort(node, "0"))
	if err != nil {
		return nil, nil, nil, err
	}
	conn := &eofConn{Conn: ch, rx: rx}
	cl, err := sshClientOver(conn, node, cfg.Login, signer)
	if err != nil {
		return nil, nil, nil, err
	}
	if cfg.Forward != "" {
		fc, err := cl.Dial("tcp", cfg.Forward)
		if err != nil {
			return nil, nil, nil, err
		}
		return &conn.end, func() { _, _ = io.Copy(io.Discard, fc) }, nil, nil
	}
	s, err := cl.NewSession()
	if err != nil {
		return nil, nil, nil, err
	}
	stderr = new(bytes.Buffer)
	s.Stderr = stderr
	if err = s.Start("sleep infinity"); err != nil {
		return nil, nil, nil, err
	}
	return &conn.end, func() { _ = s.Wait() }, stderr, nil
}

// sshClientOver opens an SSH client connection over conn to addr as user,
// authenticated by signer; the host key is not checked (a benchmark's own
// cluster).
func sshClientOver(conn net.Conn, addr, user string, signer ssh.Signer) (*ssh.Client, error) {
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

// eofConn is a `-J` channel that notes when its EOF reached the socket of
// the connection to the proxy, rx: the EOF's packet was in rx's latest read
// (the proxy sends nothing more on the channel until this client answers).
type eofConn struct {
	net.Conn
	rx  *rxConn
	end atomic.Int64 // Unix ns
}

func (c *eofConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF {
		c.end.CompareAndSwap(0, c.rx.lastRx.Load())
	}
	return n, err
}

// idlePriority puts every thread of this process under SCHED_IDLE: it
// runs only on CPU nothing else wants. Threads started later inherit it.
func idlePriority() error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0); err != nil {
			return fmt.Errorf("SCHED_IDLE for thread %d: %w", tid, err)
		}
	}
	return nil
}

// rxConn is a TCP connection that keeps the kernel's receive time of the
// data its last read returned (SO_TIMESTAMPNS).
type rxConn struct {
	*net.TCPConn
	rc     syscall.RawConn
	lastRx atomic.Int64 // Unix ns
}

func newRxConn(c net.Conn) (*rxConn, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("SO_TIMESTAMPNS: %w", serr)
	}
	return &rxConn{TCPConn: tc, rc: rc}, nil
}

func (r *rxConn) Read(p []byte) (int, error) {
	var oob [64]byte
	var n, oobn int
	var rerr error
	if err := r.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), p, oob[:], 0)
		return rerr != unix.EAGAIN
	}); err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	// Without the kernel's time (the kernel turns receive timestamps on a
	// moment after the first socket asks), the time of the read: later,
	// never earlier, than the data's arrival.
	at := time.Now().UnixNano()
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
				at = (*unix.Timespec)(unsafe.Pointer(&m.Data[0])).Nano()
			}
		}
	}
	r.lastRx.Store(at)
	return n, nil
}

// lockClients is a running lock-clients child process.
type lockClients struct {
	cmd    *exec.Cmd
	lines  chan string // its stdout, closed at its end
	stderr *syncbuf.Buffer
}

// startLockClients starts the clients' process and returns once their
// sessions are live.
func startLockClients(b *testing.B, cfg lockClientsConfig) *lockClients {
	b.Helper()
	data, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "lock-clients.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	lc := &lockClients{cmd: exec.Command(exe), lines: make(chan string, 4), stderr: new(syncbuf.Buffer)}
	lc.cmd.Env = append(os.Environ(), lockClientsEnv+"="+path)
	lc.cmd.Stderr = lc.stderr
	lc.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := lc.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := lc.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = lc.cmd.Process.Kill()
		_ = lc.cmd.Wait()
	})
	go func() {
		defer close(lc.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			lc.lines <- sc.Text()
		}
	}()
	if line := lc.next(b, 5*time.Minute); line != "ready" {
		b.Fatalf("lock clients: %q", line)
	}
	return lc
}

// next returns the clients' next line of output.
func (lc *lockClients) next(b *testing.B, timeout time.Duration) string {
	b.Helper()
	select {
	case line, ok := <-lc.lines:
		if !ok {
			_ = lc.cmd.Wait()
			b.Fatalf("the lock clients' process ended (%v): %s", lc.cmd.ProcessState, lc.stderr.String())
		}
		return line
	case <-time.After(timeout):
		b.Fatalf("no word from the lock clients' process in %s: %s", timeout, lc.stderr.String())
	}
	return ""
}

// result waits for the clients' report that every session ended.
func (lc *lockClients) result(b *testing.B, timeout time.Duration) lockClientsResult {
	b.Helper()
	var res lockClientsResult
	if err := json.Unmarshal([]byte(lc.next(b, timeout)), &res); err != nil {
		b.Fatalf("lock clients' result: %v", err)
	}
	return res
}

// TestRxConnReceiveTime checks the lock benchmark's clock: a read's
// receive time is the kernel's, between the write and the read.
func TestRxConnReceiveTime(t *testing.T) {
	nc, peer := tcptest.Pair(t)
	rx, err := newRxConn(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel turns receive timestamps on a moment after the first
	// socket asks for them: until then reads get their own time.
	kernel := 0
	deadline := patience.Deadline(t)
	for try := 1; kernel < 3; try++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d reads, only %d had the kernel's receive time", try, kernel)
		}
		if kernel == 0 {
			time.Sleep(time.Millisecond) // a moment for the kernel
		}
		sent := time.Now().UnixNano()
		if _, err := peer.Write([]byte("end")); err != nil {
			t.Fatal(err)
		}
		// The data waits in the socket before the read begins: a receive
		// time before then is the kernel's, never the read's own.
		if err := pollwait.Readable(rx.rc); err != nil {
			t.Fatal(err)
		}
		arrived := time.Now().UnixNano()
		buf := make([]byte, 16)
		if n, err := rx.Read(buf); err != nil || string(buf[:n]) != "end" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		read := time.Now().UnixNano()
		switch got := rx.lastRx.Load(); {
		case got < sent || got > read:
			t.Fatalf("receive time %d: want between the write (%d) and the read (%d)", got, sent, read)
		case got < arrived:
			kernel++ // the kernel's: it cannot be the read's own time
		case kernel > 0:
			t.Fatalf("receive time %d is the read's (%d), not the kernel's, after the kernel's was seen", got, read)
		}
	}
	peer.Close()
	if n, err := rx.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Fatalf("after the peer's close: %d, %v; want io.EOF", n, err)
	}
}
