package node

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/testkit"
)

// echoServer echoes each connection until EOF, then closes it.
func echoServer(t *testing.T) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr()
}

func TestPortForwarding(t *testing.T) {
	echo := echoServer(t)
	login := currentLogin(t)

	t.Run("ssh -W permitted", func(t *testing.T) {
		e := newEnv(t)
		id := e.newIdentity(certOpts{principals: []string{login}})
		args := append(e.sshOpts(id), "-p", strconv.Itoa(e.addr.Port), "-W", echo.String(), login+"@127.0.0.1")
		r := e.run(strings.NewReader("ping through the node\n"), "ssh", args...)
		if r.code != 0 || r.stdout != "ping through the node\n" {
			t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		e.audit.wait(t, audit.PortForward, func(ev audit.Event) bool {
			return ev.Success && ev.Fields["kind"] == "local" && ev.Fields["addr"] == echo.String()
		})
	})

	t.Run("ssh -L permitted", func(t *testing.T) {
		e := newEnv(t)
		id := e.newIdentity(certOpts{principals: []string{login}})
		lport := testkit.FreePort(t)
		spec := "127.0.0.1:" + strconv.Itoa(lport) + ":" + echo.String()
		// The forward lives as long as the remote command runs: until
		// the test closes its input.
		args := append(e.sshOpts(id), "-p", strconv.Itoa(e.addr.Port), "-o", "ExitOnForwardFailure=yes",
			"-L", spec, login+"@127.0.0.1", "cat >/dev/null")
		stdin, endInput := io.Pipe()
		defer endInput.Close()
		done := make(chan result, 1)
		go func() { done <- e.run(stdin, "ssh", args...) }()
		var c net.Conn
		testkit.WaitFor(t, "the local forward to listen", func() bool {
			var err error
			c, err = net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(lport), time.Second)
			return err == nil
		})
		defer c.Close()
		if _, err := io.WriteString(c, "hello -L\n"); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "hello -L\n" {
			t.Fatalf("echo through -L: %q, %v", line, err)
		}
		c.Close()
		endInput.Close()
		if r := <-done; r.code != 0 {
			t.Fatalf("ssh -L exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("remote forward permitted", func(t *testing.T) {
		e := newEnv(t)
		c := e.connect(t, login)
		ln, err := c.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("remote listen: %v", err)
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		defer ln.Close()
		wg.Go(func() {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			_, _ = io.Copy(conn, conn)
		})
		// The node listens on its loopback; this test runs on the node.
		nc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if _, err := io.WriteString(nc, "hello -R\n"); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil || line != "hello -R\n" {
			t.Fatalf("echo through -R: %q, %v", line, err)
		}
		e.audit.wait(t, audit.PortForward, func(ev audit.Event) bool { return ev.Success && ev.Fields["kind"] == "remote" })
	})

	t.Run("denied", func(t *testing.T) {
		e := newEnv(t)
		e.setAuthz(func(ctx context.Context, req AuthzRequest) (*Permissions, error) {
			p, _ := allowAll(ctx, req)
			p.PortForwarding = false
			return p, nil
		})
		id := e.newIdentity(certOpts{principals: []string{login}})
		base := append(e.sshOpts(id), "-p", strconv.Itoa(e.addr.Port))

		r := e.run(strings.NewReader("x\n"), "ssh", append(base, "-W", echo.String(), login+"@127.0.0.1")...)
		if r.code != 255 || !strings.Contains(r.stderr, forwardDeniedMessage) {
			t.Errorf("-W: exit %d stderr %q", r.code, r.stderr)
		}
		r = e.run(nil, "ssh", append(base, "-o", "ExitOnForwardFailure=yes", "-R", "0:"+echo.String(), login+"@127.0.0.1", "echo ran")...)
		if r.code != 255 || !strings.Contains(r.stderr, "remote port forwarding failed") || r.stdout != "" {
			t.Errorf("-R: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		e.audit.wait(t, audit.PortForward, func(ev audit.Event) bool {
			return !ev.Success && ev.Fields["kind"] == "local" && ev.Error == forwardDeniedMessage
		})
		e.audit.wait(t, audit.PortForward, func(ev audit.Event) bool { return !ev.Success && ev.Fields["kind"] == "remote" })
	})
}

func TestSessionEndsWhenCertificateExpires(t *testing.T) {
	// The node's clock stands still at the login: however slow the
	// machine, the certificate is valid then and ends 3 s (real time, the
	// node's timer) into the session.
	now := time.Now()
	e := newEnv(t, func(c *Config) { c.Now = func() time.Time { return now } })
	login := currentLogin(t)
	// The command never ends by itself: only the expiry ends it.
	const command = "echo started; sleep infinity; echo finished"
	for _, tc := range []struct {
		name  string
		extra []string
	}{{"exec", nil}, {"pty", []string{"-tt"}}} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.newIdentity(certOpts{principals: []string{login}, validAfter: now.Add(-time.Second), ttl: 4 * time.Second})
			r := e.ssh(id, login, tc.extra, command)
			if r.code == 0 || strings.Contains(r.stdout, "finished") {
				t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, "your certificate expired") {
				t.Errorf("stderr %q lacks the expiry message", r.stderr)
			}
		})
	}
	// The command ran (a refused login starts no session), and the expiry
	// ended it.
	for _, tty := range []bool{false, true} {
		e.audit.wait(t, audit.SessionStart, func(ev audit.Event) bool { return ev.Fields["command"] == command && ev.Fields["tty"] == tty })
	}
	e.audit.wait(t, audit.Exec, func(ev audit.Event) bool { return ev.Fields["command"] == command })
	e.audit.wait(t, audit.SessionEnd, func(ev audit.Event) bool { return ev.Fields["reason"] == "certificate expired" })
}
