//go:build integration

package web_test

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/testkit"
)

// blipNet stands between the browser and the proxy, as the network does:
// it forwards TCP connections until cut, which drops every connection
// and refuses new ones until restored.
type blipNet struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	down    bool
	refused int
	conns   map[net.Conn]struct{}
}

func newBlipNet(t *testing.T, target string) *blipNet {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &blipNet{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); n.cut() })
	go n.serve()
	return n
}

func (n *blipNet) addr() string { return n.ln.Addr().String() }

func (n *blipNet) serve() {
	for {
		c, err := n.ln.Accept()
		if err != nil {
			return
		}
		n.mu.Lock()
		if n.down {
			n.refused++
			n.mu.Unlock()
			c.Close()
			continue
		}
		n.mu.Unlock()
		go n.forward(c)
	}
}

func (n *blipNet) forward(c net.Conn) {
	u, err := net.Dial("tcp", n.target)
	if err != nil {
		c.Close()
		return
	}
	n.mu.Lock()
	if n.down {
		n.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	n.conns[c], n.conns[u] = struct{}{}, struct{}{}
	n.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); done <- struct{}{} }()
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	n.mu.Lock()
	delete(n.conns, c)
	delete(n.conns, u)
	n.mu.Unlock()
}

// cut drops every connection and refuses new ones.
func (n *blipNet) cut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down = true
	for c := range n.conns {
		c.Close()
	}
}

func (n *blipNet) restore() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down = false
}

func (n *blipNet) refusals() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.refused
}

// TestBrowserTerminalResume: the network between the browser and the
// proxy drops in the middle of a web terminal; the page reconnects on
// its own once it is back, to the same shell (a variable set before is
// still set), and shows the output the shell produced meanwhile.
func TestBrowserTerminalResume(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	carol := c.AddUser("carol", []string{"dev"}, []string{"carol"})
	clustertest.EnsureOSUser(t, "carol")
	netw := newBlipNet(t, c.ProxyAddr())
	b := newBrowser(t, "https://"+netw.addr())
	openTerminal(t, b, carol, "carol")
	rows := `document.querySelector(".xterm-rows").textContent`
	b.typeText("V=blip-$((6*7)); echo set-$V")
	b.pressEnter()
	b.waitJS(rows + `.includes("set-blip-42")`)

	dir, err := os.MkdirTemp("", "warden-blip-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777) // the shell runs as carol
	goFile, doneFile := filepath.Join(dir, "go"), filepath.Join(dir, "done")
	b.typeText("while [ ! -e " + goFile + " ]; do sleep 0.05; done; echo during-$V; touch " + doneFile)
	b.pressEnter()
	b.waitJS(rows + `.includes("touch ")`)

	netw.cut()
	b.waitJS(`document.getElementById("term-status").textContent === "reconnecting…"`)
	// The shell prints while the page is away.
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the shell's output during the blip", func() bool { _, err := os.Stat(doneFile); return err == nil })
	testkit.WaitFor(t, "the page trying to reconnect during the blip", func() bool { return netw.refusals() > 0 })
	b.screenshot("terminal-reconnecting")
	netw.restore()

	b.waitJS(`document.getElementById("terminal").dataset.resumes === "1"`)
	b.waitJS(`document.getElementById("term-status").textContent === "connected"`)
	b.waitJS(rows + `.includes("during-blip-42")`)
	b.typeText("echo again-$V")
	b.pressEnter()
	b.waitJS(rows + `.includes("again-blip-42")`)
	if closed := eval[bool](b, `document.getElementById("terminal").dataset.closed === "1"`); closed {
		t.Fatal("the terminal closed")
	}
	b.screenshot("terminal-resumed")
}

// TestBrowserTerminalFlood: 20 MB of output through a web terminal all
// arrive (the marker after them shows) while the page keeps answering:
// the page acknowledges output as xterm writes it and the server sends at
// most 1 MiB ahead, so xterm never queues a flood.
func TestBrowserTerminalFlood(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	carol := c.AddUser("carol", []string{"dev"}, []string{"carol"})
	clustertest.EnsureOSUser(t, "carol")
	b := newBrowser(t, "https://"+c.ProxyAddr())
	openTerminal(t, b, carol, "carol")
	b.typeText("yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 20M; echo END-$((6*7))")
	b.pressEnter()
	// The page stays responsive when it keeps answering script while the
	// output still streams in: answers that saw the screen move on before
	// the end. A page blocked by the flood would answer only once it is
	// over. How fast it answers is a figure, not a pass mark (a busy
	// machine slows everything down).
	rows := `document.querySelector(".xterm-rows").textContent`
	var worst time.Duration
	var midFlood int
	last := ""
	for {
		t0 := time.Now()
		screen := eval[string](b, rows)
		worst = max(worst, time.Since(t0))
		if strings.Contains(screen, "END-42") {
			break
		}
		if last != "" && screen != last {
			midFlood++
		}
		last = screen
	}
	t.Logf("answers while the output streamed: %d; slowest: %v", midFlood, worst.Round(time.Millisecond))
	if midFlood < 2 {
		t.Errorf("the page answered %d times while 20 MB streamed in: blocked by the flood", midFlood)
	}
}
