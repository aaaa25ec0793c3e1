//go:build integration

package clustertest

import (
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/cli"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

const forwardingRole = `
kind: role
metadata: {name: forwarder}
spec:
  options: {port_forwarding: true}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`

// TestWardenSSHLocalForward: `warden ssh -N -L` carries a local port to a
// service as the node sees it, both ways and with each side's end of
// input; a user whose roles do not allow forwarding gets the node's
// reason; and a lock ends the forwarding command.
func TestWardenSSHLocalForward(t *testing.T) {
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "web1"})
	c.ApplyRoles(forwardingRole)
	echo := echoServer(t)

	// forward runs `warden ssh -N -L 0:ECHO dev@web1` for home until ctx
	// ends, and returns the local address it listens on and its result.
	forward := func(ctx context.Context, home string) (addr string, stderr *syncbuf.Buffer, code <-chan int) {
		t.Helper()
		stderr = &syncbuf.Buffer{}
		done := make(chan int, 1)
		go func() {
			done <- cli.RunIO(ctx, []string{"--data-dir", c.DataDir, "--home", home,
				"ssh", "-N", "-L", "0:" + echo, osLogin + "@web1"}, &cli.IO{In: strings.NewReader(""), Out: io.Discard, Err: stderr})
		}()
		re := regexp.MustCompile(`forwarding (127\.0\.0\.1:\d+) -> `)
		testkit.WaitFor(t, "the forward to listen", func() bool {
			m := re.FindStringSubmatch(stderr.String())
			if m != nil {
				addr = m[1]
			}
			return m != nil
		})
		return addr, stderr, done
	}

	u := c.AddUser("fwd", []string{"forwarder"}, []string{osLogin})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, stderr, code := forward(ctx, c.Login(u))
	for range 2 { // two connections through one forward
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("ping through warden\n")); err != nil {
			t.Fatal(err)
		}
		conn.(*net.TCPConn).CloseWrite() // the echo server ends when its input does
		conn.SetReadDeadline(patience.Deadline(t))
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || string(got) != "ping through warden\n" {
			t.Fatalf("through the forward: %q, %v (stderr %s)", got, err, stderr)
		}
	}

	// A lock ends the forwarding command with an error.
	if _, err := c.Admin.CreateLock(context.Background(), auth.CreateLockRequest{Target: lock.Target{User: "fwd"}, Message: "stop"}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-code:
		if n == 0 || !strings.Contains(stderr.String(), "the connection to web1 ended") {
			t.Fatalf("after the lock: exit %d, stderr %s", n, stderr)
		}
	case <-time.After(patience.Left(t)):
		t.Fatalf("warden ssh -N still running long after the lock: %s", stderr)
	}

	// Without port forwarding in the roles, the node refuses and says why.
	u2 := c.AddUser("nofwd", []string{"access"}, []string{osLogin})
	ctx2, cancel2 := context.WithCancel(context.Background())
	addr, stderr, code = forward(ctx2, c.Login(u2))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(patience.Deadline(t))
	if got, _ := io.ReadAll(conn); len(got) != 0 {
		t.Fatalf("a refused forward carried %q", got)
	}
	conn.Close()
	testkit.WaitFor(t, "the node's reason on stderr", func() bool {
		return strings.Contains(stderr.String(), "port forwarding is not allowed by your roles")
	})
	cancel2()
	if n := <-code; n != 0 {
		t.Fatalf("interrupted warden ssh -N: exit %d, stderr %s", n, stderr)
	}
}

// echoServer serves, on a loopback port, connections that send back what
// they receive until their input ends; it returns the address.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return ln.Addr().String()
}
