//go:build integration

package clustertest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/warden-sh/warden/internal/testkit"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warden-sh/warden/internal/syncbuf"
)

// netLab is a small network of "hosts" for tests of separate processes:
// each host is a network namespace with its own address on one bridge in
// the test's namespace (which has the bridge's .1 address and so reaches
// every host, and they it). Names carry a random tag, so concurrent tests
// do not collide; everything is removed when the test ends.
type netLab struct {
	t      *testing.T
	tag    string
	bridge string
	// subnet is the /24's first three octets ("10.x.y").
	subnet string
	next   int
}

func newNetLab(t *testing.T) *netLab {
	t.Helper()
	testkit.ChangeNetwork(t) // no browser test meanwhile (its Chromium would see the interfaces change)
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	l := &netLab{t: t, tag: hex.EncodeToString(b[:]), subnet: fmt.Sprintf("10.%d.%d", 100+int(b[0])%100, b[1]), next: 10}
	l.bridge = "wb" + l.tag
	l.ip("link", "add", l.bridge, "type", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", l.bridge).Run() })
	l.quiet(l.bridge)
	l.ip("addr", "add", l.Gateway()+"/24", "dev", l.bridge)
	l.ip("link", "set", l.bridge, "up")
	return l
}

// Gateway is the test's own address on the lab's network.
func (l *netLab) Gateway() string { return l.subnet + ".1" }

func (l *netLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// quiet keeps an interface of the test's namespace from gaining an IPv6
// link-local address: the kernel adds one a second or more after the
// link comes up (when duplicate address detection ends), and Chromium,
// seeing an address appear, aborts its loads, fetches and WebSockets
// with ERR_NETWORK_CHANGED, even in a browser started after the lab was
// built. Without it, the lab's changes all happen before ip returns.
func (l *netLab) quiet(link string) {
	l.t.Helper()
	l.ip("link", "set", "dev", link, "addrgenmode", "none")
}

// labHost is one network namespace with its own address.
type labHost struct {
	lab  *netLab
	Name string
	NS   string
	IP   string
}

// Host adds a host: a namespace whose eth0 has the next address.
func (l *netLab) Host(name string) *labHost {
	l.t.Helper()
	l.next++
	n := l.next
	h := &labHost{lab: l, Name: name, NS: "w" + l.tag + "-" + name, IP: fmt.Sprintf("%s.%d", l.subnet, n)}
	outer, inner := fmt.Sprintf("wv%s%d", l.tag, n), fmt.Sprintf("wp%s%d", l.tag, n)
	l.ip("netns", "add", h.NS)
	l.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", h.NS).Run() })
	l.ip("link", "add", outer, "type", "veth", "peer", "name", inner)
	l.t.Cleanup(func() { _ = exec.Command("ip", "link", "del", outer).Run() })
	l.quiet(outer)
	l.ip("link", "set", outer, "master", l.bridge, "up")
	l.ip("link", "set", inner, "netns", h.NS)
	l.ip("-n", h.NS, "link", "set", inner, "name", "eth0")
	l.ip("-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
	l.ip("-n", h.NS, "link", "set", "eth0", "up")
	l.ip("-n", h.NS, "link", "set", "lo", "up")
	return h
}

// Addr is host:port on this host.
func (h *labHost) Addr(port int) string { return net.JoinHostPort(h.IP, fmt.Sprint(port)) }

// labProcess is a process running on a lab host.
type labProcess struct {
	cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan struct{}
	name string
}

// Start runs name args... in the host's namespace until the test ends
// (SIGTERM, then SIGKILL); its output is shown when the test fails.
func (h *labHost) Start(t *testing.T, name string, args ...string) *labProcess {
	t.Helper()
	p := &labProcess{cmd: exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...),
		done: make(chan struct{}), name: h.Name}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", h.Name, p.out.String())
		}
	})
	return p
}

func (p *labProcess) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// forwardTCP serves listen by connecting each connection to target (for
// peers that listen on the test's loopback only, such as PostgreSQL),
// until the test ends.
func forwardTCP(t *testing.T, listen, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	forwardFrom(t, ln, dialTCP(target))
}

// forwardLoopback makes the test's loopback address addr (127.0.0.1:PORT)
// reachable at the same address inside host h's namespace: a listener
// made in h's namespace (by a thread moved there, which ends with it),
// each connection carried to addr on the test's side. For peers that
// must be on a loopback address for both the browser and a lab host
// (an OIDC issuer over plain HTTP).
func (h *labHost) forwardLoopback(t *testing.T, addr string) {
	t.Helper()
	type res struct {
		ln  net.Listener
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// Never unlocked: the thread, now in h's namespace, ends with
		// this goroutine.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + h.NS)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: err}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- res{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, h.Name, r.err)
	}
	forwardFrom(t, r.ln, dialTCP(addr))
}

// dialTCP dials target, for forwardFrom.
func dialTCP(target string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.Dial("tcp", target) }
}

// forwardFrom carries each connection to ln to a connection from dial
// until the test ends.
func forwardFrom(t testing.TB, ln net.Listener, dial func() (net.Conn, error)) {
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = struct{}{}
		} else {
			delete(conns, c)
		}
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				up, err := dial()
				if err != nil {
					c.Close()
					return
				}
				track(c, true)
				track(up, true)
				defer func() { track(c, false); track(up, false) }()
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
				c.Close()
			}()
		}
	}()
}
