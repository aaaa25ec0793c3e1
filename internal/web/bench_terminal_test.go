//go:build integration

package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/client/sshclient"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/tunnel"
)

// The web terminal's benchmarks (they need a real node, hence the
// integration tag):
//
//	go test -tags integration ./internal/web -run '^$' -bench Terminal -benchtime 2000x
//
// BenchmarkTerminalEcho measures a keystroke's echo round trip through the
// WebSocket bridge and through `warden ssh`'s own client path (a data
// connection through the proxy, SSH end to end to the node), side by side
// in one run, and reports the ratio of the medians. BenchmarkTerminalBulk
// measures 100 MB of output through both.

// termPipe is one side of a terminal under test: keys in, output out.
type termPipe interface {
	send(p []byte) error
	// recv returns the next piece of output.
	recv() ([]byte, error)
	// settle acknowledges the output received (a page does, once xterm
	// has written it: after the output arrived, not before).
	settle() error
}

// wsPipe is a web terminal socket, acknowledging output as terminal.js
// does once xterm has written it. It reads each message into one reused
// buffer: a page's costs are not this process's, and io.ReadAll's growing
// copies (websocket.Conn.Read) would be charged to the bridge here.
type wsPipe struct {
	ws       *websocket.Conn
	buf      []byte
	received int64
	acked    int64
}

func (p *wsPipe) send(b []byte) error {
	return p.ws.Write(context.Background(), websocket.MessageBinary, b)
}

func (p *wsPipe) recv() ([]byte, error) {
	for {
		typ, r, err := p.ws.Reader(context.Background())
		if err != nil {
			return nil, err
		}
		n := 0
		for {
			if n == len(p.buf) {
				p.buf = append(p.buf, make([]byte, len(p.buf))...)
			}
			k, err := r.Read(p.buf[n:])
			n += k
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
		}
		if typ != websocket.MessageBinary {
			continue
		}
		p.received += int64(n)
		// A window's worth is acknowledged at once; a little output (an
		// echo) when the caller settles.
		if p.received-p.acked >= 64<<10 {
			if err := p.settle(); err != nil {
				return nil, err
			}
		}
		return p.buf[:n], nil
	}
}

func (p *wsPipe) settle() error {
	if p.received == p.acked {
		return nil
	}
	p.acked = p.received
	ack, _ := json.Marshal(map[string]int64{"ack": p.received})
	return p.ws.Write(context.Background(), websocket.MessageText, ack)
}

// sshPipe is a PTY session of `warden ssh`'s client path.
type sshPipe struct {
	in  io.Writer
	out io.Reader
	buf []byte
}

func (p *sshPipe) send(b []byte) error { _, err := p.in.Write(b); return err }

func (p *sshPipe) recv() ([]byte, error) {
	n, err := p.out.Read(p.buf)
	return p.buf[:n], err
}

func (p *sshPipe) settle() error { return nil }

// benchTerminals opens the same kind of terminal on node1 both ways, as
// carol, each running a shell.
func benchTerminals(b *testing.B) (web, cli termPipe, signer ssh.Signer) {
	c := clustertest.New(b, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	carol := c.AddUser("carol", []string{"dev"}, []string{"carol"})
	clustertest.EnsureOSUser(b, "carol")

	w := webSignin(b, c, carol, "")
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, "wss"+w.base[len("https"):]+"/web/servers/node1/ws?login=carol",
		&websocket.DialOptions{HTTPClient: w.hc, HTTPHeader: map[string][]string{"Origin": {w.base}}})
	if err != nil {
		b.Fatal(err)
	}
	ws.SetReadLimit(1 << 20)
	b.Cleanup(func() { ws.CloseNow() })
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"cols":120,"rows":40}`)); err != nil {
		b.Fatal(err)
	}
	web = &wsPipe{ws: ws, buf: make([]byte, 256<<10)}

	// `warden ssh carol@node1`, as internal/cli dials it.
	home := c.Login(carol)
	p, err := client.LoadProfile(home)
	if err != nil {
		b.Fatal(err)
	}
	signer, _, err = p.Signer()
	if err != nil {
		b.Fatal(err)
	}
	cas, err := p.HostCAs()
	if err != nil {
		b.Fatal(err)
	}
	nodes, err := c.Admin.ListNodes(ctx, nil)
	if err != nil || len(nodes) == 0 {
		b.Fatalf("nodes: %v %v", nodes, err)
	}
	id := nodes[0].ID
	pc, err := sshclient.Dial(ctx, sshclient.Config{User: p.User, Addr: p.Proxy, Signer: signer, HostCAs: cas, Timeout: 15 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pc.Close() })
	nc, err := sshclient.Dial(ctx, sshclient.Config{User: "carol", Addr: net.JoinHostPort(id, "0"), Signer: signer, HostCAs: cas,
		HostName: id, Timeout: 15 * time.Second,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := tunnel.DialData(ctx, pc, p.Proxy, id)
			if errors.Is(err, tunnel.ErrNoDataConns) {
				return pc.Dial("tcp", net.JoinHostPort(id, "0"))
			}
			return conn, err
		}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	return web, ptyShell(b, nc), signer
}

// ptyShell opens a shell on a PTY of 120×40 over c.
func ptyShell(b *testing.B, c *ssh.Client) termPipe {
	sess, err := c.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	if err := sess.RequestPty("xterm-256color", 40, 120, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		b.Fatal(err)
	}
	in, _ := sess.StdinPipe()
	out, _ := sess.StdoutPipe()
	if err := sess.Shell(); err != nil {
		b.Fatal(err)
	}
	return &sshPipe{in: in, out: out, buf: make([]byte, 256<<10)}
}

// runUntil sends cmd and reads output until it holds mark; it returns the
// bytes read.
func runUntil(b *testing.B, t termPipe, cmd, mark string) int64 {
	if err := t.send([]byte(cmd)); err != nil {
		b.Fatal(err)
	}
	var n int64
	var tail []byte
	for {
		p, err := t.recv()
		if err != nil {
			b.Fatalf("waiting for %q: %v", mark, err)
		}
		n += int64(len(p))
		tail = append(tail, p...)
		if bytes.Contains(tail, []byte(mark)) {
			if err := t.settle(); err != nil {
				b.Fatal(err)
			}
			return n
		}
		if len(tail) > 4096 {
			tail = append(tail[:0], tail[len(tail)-64:]...)
		}
	}
}

// echoOnce sends one key and waits for its echo (the remote cat in raw
// mode writes each byte back).
func echoOnce(b *testing.B, t termPipe) time.Duration {
	t0 := time.Now()
	if err := t.send([]byte{'x'}); err != nil {
		b.Fatal(err)
	}
	for got := 0; got < 1; {
		p, err := t.recv()
		if err != nil {
			b.Fatal(err)
		}
		got += bytes.Count(p, []byte{'x'})
	}
	d := time.Since(t0)
	if err := t.settle(); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkTerminalEcho: a keystroke's echo through the web terminal's
// WebSocket bridge and through `warden ssh`, alternately in one run.
func BenchmarkTerminalEcho(b *testing.B) {
	web, cli, _ := benchTerminals(b)
	for _, t := range []termPipe{web, cli} {
		// The remote side echoes each byte at once: a raw terminal and cat.
		runUntil(b, t, "stty raw -echo; echo READY-$((6*7)); exec cat\n", "READY-42")
		for range 20 {
			echoOnce(b, t) // warm up
		}
	}
	var dw, dc []time.Duration
	b.ResetTimer()
	for b.Loop() {
		dw = append(dw, echoOnce(b, web))
		dc = append(dc, echoOnce(b, cli))
	}
	b.StopTimer()
	slices.Sort(dw)
	slices.Sort(dc)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	w50, c50 := dw[len(dw)/2], dc[len(dc)/2]
	b.ReportMetric(us(w50), "web-p50-µs")
	b.ReportMetric(us(c50), "ssh-p50-µs")
	b.ReportMetric(us(dw[len(dw)*95/100]), "web-p95-µs")
	b.ReportMetric(us(dc[len(dc)*95/100]), "ssh-p95-µs")
	b.ReportMetric(float64(w50)/float64(c50), "web/ssh")
}

// BenchmarkTerminalBulk: 100 MB of output (yes | head -c 100M: lines of
// 74 characters) through the web terminal's bridge and through `warden
// ssh`, in MB/s, and the same command in a bare PTY read by this process
// (no SSH, no recording, no bridge): the ceiling of any terminal on this
// machine. Besides the rates it reports CPU per MB, of this process (node,
// proxy, bridge and client alike) and of the whole machine (busy time in
// /proc/stat: this process, the shell's yes and head, and the kernel's
// PTY work, which runs in kernel threads), so that a rate can be read
// against what the machine's cores allow.
func BenchmarkTerminalBulk(b *testing.B) {
	web, cli, signer := benchTerminals(b)
	sshd := opensshTerminal(b, signer)
	for _, t := range []termPipe{web, cli, sshd} {
		runUntil(b, t, "stty -echo; echo READY-$((6*7))\n", "READY-42")
	}
	const size = 100 << 20
	const cmd = "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c 100M"
	var wall, self, machine [4]time.Duration // web, ssh, openssh, bare
	b.ResetTimer()
	for b.Loop() {
		for i, t := range []termPipe{web, cli, sshd, nil} {
			t0, c0, m0 := time.Now(), cpuTime(b), testkit.MachineBusy()
			var n int64
			if t == nil {
				n = barePTY(b, cmd)
			} else {
				n = runUntil(b, t, cmd+"; echo END-$((6*7))\n", "END-42")
			}
			if n < size {
				b.Fatalf("read %d bytes", n)
			}
			wall[i] += time.Since(t0)
			self[i] += cpuTime(b) - c0
			machine[i] += testkit.MachineBusy() - m0
		}
	}
	b.StopTimer()
	mb := float64(size) / 1e6 * float64(b.N)
	for i, name := range []string{"web", "ssh", "openssh", "bare"} {
		b.ReportMetric(mb/wall[i].Seconds(), name+"-MB/s")
		b.ReportMetric(float64(machine[i].Milliseconds())/mb, name+"-machine-cpu-ms/MB")
		if i < 2 {
			// The other runs' clients are this process too, but they
			// are no part of Warden.
			b.ReportMetric(float64(self[i].Milliseconds())/mb, name+"-cpu-ms/MB")
		}
	}
	b.ReportMetric(wall[3].Seconds()/wall[0].Seconds(), "web/bare")
	b.ReportMetric(wall[2].Seconds()/wall[0].Seconds(), "web/openssh")
}

// opensshTerminal is the baseline of a plain SSH server: a PTY session
// as carol on the stock OpenSSH sshd (no recording, one SSH layer, no
// proxy), trusting the cluster's user CA, with the same Go SSH client as
// `warden ssh`.
func opensshTerminal(b *testing.B, signer ssh.Signer) termPipe {
	cert, ok := signer.PublicKey().(*ssh.Certificate)
	if !ok {
		b.Fatal("carol's login holds no certificate")
	}
	if out, err := exec.Command("usermod", "-p", "*", "carol").CombinedOutput(); err != nil {
		b.Fatalf("usermod: %v: %s", err, out) // sshd refuses a locked account
	}
	d := testkit.StartSSHD(b, testkit.SSHDOptions{UserCAs: []ssh.PublicKey{cert.SignatureKey}, Config: []string{"LogLevel ERROR"}})
	hostKey, err := os.ReadFile(d.HostKey)
	if err != nil {
		b.Fatal(err)
	}
	hs, err := ssh.ParsePrivateKey(hostKey)
	if err != nil {
		b.Fatal(err)
	}
	c, err := ssh.Dial("tcp", d.Addr, &ssh.ClientConfig{User: "carol", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hs.PublicKey()), Timeout: 15 * time.Second})
	if err != nil {
		b.Fatalf("sshd: %v\n%s", err, d.Log)
	}
	b.Cleanup(func() { c.Close() })
	return ptyShell(b, c)
}

// barePTY runs cmd in a shell on a new PTY (echo off, as the terminals
// have it) and reads its output to the end as fast as it comes; it
// returns the bytes read.
func barePTY(b *testing.B, cmd string) int64 {
	c := exec.Command("sh", "-c", "stty -echo; "+cmd)
	ptmx, err := pty.StartWithSize(c, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		b.Fatal(err)
	}
	defer ptmx.Close()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, err := ptmx.Read(buf)
		n += int64(k)
		if err != nil { // EIO once the shell has exited and all is read
			break
		}
	}
	if err := c.Wait(); err != nil {
		b.Fatal(err)
	}
	return n
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
