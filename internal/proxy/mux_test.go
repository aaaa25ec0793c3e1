package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
)

// startMux serves a Mux on a loopback port until the test ends.
func startMux(t *testing.T, peek time.Duration) (*Mux, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln)
	if peek > 0 {
		m.PeekTimeout = peek
	}
	served := make(chan error, 1)
	go func() { served <- m.Serve() }()
	t.Cleanup(func() {
		m.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return m, ln.Addr().String()
}

// accept returns the next connection l receives (within the test's
// patience).
func accept(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		got <- c
	}()
	select {
	case c := <-got:
		if c == nil {
			t.Fatal("listener closed")
		}
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(patience.Left(t)):
		t.Fatal("no connection delivered")
		return nil
	}
}

// TestMuxRoutesByFirstBytes: SSH, data connections and TLS share the port;
// the first bytes decide, and whoever gets the connection reads it from
// its first byte.
func TestMuxRoutesByFirstBytes(t *testing.T) {
	m, addr := startMux(t, 0)
	for _, tc := range []struct {
		name  string
		first string
		l     net.Listener
	}{
		{"ssh", "SSH-2.0-OpenSSH_9.6\r\n", m.SSH()},
		{"data", dataMagic + "u0123\n", m.Data()},
		{"tls", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", m.TLS()},
		{"anything else", "GET / HTTP/1.1\r\n", m.TLS()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.first+"more"); err != nil {
				t.Fatal(err)
			}
			s := accept(t, tc.l)
			if s.LocalAddr().String() != addr || tc.l.Addr().String() != addr {
				t.Errorf("addresses %s, %s, want %s", s.LocalAddr(), tc.l.Addr(), addr)
			}
			_ = s.SetReadDeadline(time.Now().Add(patience.Left(t)))
			got := make([]byte, len(tc.first)+4)
			if _, err := io.ReadFull(s, got); err != nil || string(got) != tc.first+"more" {
				t.Errorf("read %q, %v; want %q", got, err, tc.first+"more")
			}
			// And the other way.
			if _, err := io.WriteString(s, "reply\n"); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != "reply\n" {
				t.Errorf("reply %q, %v", line, err)
			}
		})
	}
}

// TestMuxDropsSilentAndShortClients: a client that sends fewer than the 4
// bytes that decide, within PeekTimeout, is dropped and reaches no one.
func TestMuxDropsSilentAndShortClients(t *testing.T) {
	m, addr := startMux(t, 200*time.Millisecond)
	delivered := make(chan string, 3)
	for name, l := range map[string]net.Listener{"ssh": m.SSH(), "tls": m.TLS(), "data": m.Data()} {
		go func() {
			if c, err := l.Accept(); err == nil {
				delivered <- name
				c.Close()
			}
		}()
	}
	for _, sent := range []string{"", "SS"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, sent); err != nil {
			t.Fatal(err)
		}
		// Closed by the mux once PeekTimeout has passed: the read ends
		// with EOF (or a reset), not with the test's deadline.
		_ = c.SetReadDeadline(time.Now().Add(patience.Left(t)))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, net.ErrClosed) || isTimeout(err) {
			t.Errorf("after %q: read %d, %v; want the mux to close the connection", sent, n, err)
		}
	}
	// A client that closes before 4 bytes is dropped at once too.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "S")
	c.Close()
	// Only a complete connection arrives after them (connections are
	// routed in parallel, so this shows only that the others did not
	// reach a listener first).
	ok, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	if _, err := io.WriteString(ok, "SSH-2.0-x\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case name := <-delivered:
		if name != "ssh" {
			t.Errorf("a dropped client reached %s", name)
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("the complete connection was not delivered")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestMuxCloseEndsEverything: Close ends Serve and the three listeners,
// and a connection routed after Close is closed rather than left waiting.
func TestMuxCloseEndsEverything(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln)
	served := make(chan error, 1)
	go func() { served <- m.Serve() }()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after Close: %v", err)
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("Serve did not return after Close")
	}
	for _, l := range []net.Listener{m.SSH(), m.TLS(), m.Data()} {
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	}
	a, b := net.Pipe()
	defer b.Close()
	go m.route(a)
	if _, err := io.WriteString(b, "SSH-2.0-late\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(make([]byte, 1)); err == nil {
		t.Error("a connection routed after Close was not closed")
	}
}
