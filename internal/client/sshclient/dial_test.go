//go:build integration

package sshclient

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/testkit"
	"golang.org/x/crypto/ssh"
)

func TestDialVerifiesHostCertificate(t *testing.T) {
	t.Parallel()
	userCA, hostCA, otherCA := newTestCA(t), newTestCA(t), newTestCA(t)
	login := currentLogin(t)
	good := startSSHD(t, sshdOptions{userCA: userCA, hostCA: hostCA, hostNames: []string{testHostName}})
	plain := startSSHD(t, sshdOptions{userCA: userCA})
	foreign := startSSHD(t, sshdOptions{userCA: userCA, hostCA: otherCA, hostNames: []string{testHostName}})

	tests := []struct {
		name     string
		addr     string
		hostName string
		now      func() time.Time
		wantErr  string // "" means the connection must work
	}{
		{name: "signed cert for the name", addr: good.Addr, hostName: testHostName},
		{name: "empty host name accepts any principal", addr: good.Addr, hostName: ""},
		{name: "plain host key", addr: plain.Addr, hostName: testHostName,
			wantErr: "host key for " + testHostName + " is not signed by the cluster's host CA"},
		{name: "plain host key without host name", addr: plain.Addr,
			wantErr: "host key for " + plain.Addr + " is not signed by the cluster's host CA"},
		{name: "host cert from another CA", addr: foreign.Addr, hostName: testHostName,
			wantErr: "host key for " + testHostName + " is not signed by the cluster's host CA"},
		{name: "cert for another name", addr: good.Addr, hostName: "node2.example.test",
			wantErr: "host certificate of node2.example.test is not valid: it is issued for other names"},
		{name: "expired host cert", addr: good.Addr, hostName: testHostName,
			now:     func() time.Time { return time.Now().Add(2 * time.Hour) },
			wantErr: "host certificate of " + testHostName + " is not valid: cert has expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, err := Dial(context.Background(), Config{
				User:     login,
				Addr:     tt.addr,
				Signer:   userCA.userSigner(t, login),
				HostCAs:  []ssh.PublicKey{hostCA.pub()},
				HostName: tt.hostName,
				Timeout:  patience.Left(t),
				Now:      tt.now,
			})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				client.Close()
				return
			}
			if err == nil {
				client.Close()
				t.Fatalf("Dial succeeded, want error %q", tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error = %q, want %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrUntrustedHost) {
				t.Errorf("errors.Is(%v, ErrUntrustedHost) = false", err)
			}
		})
	}
}

func TestDialTrustsAnyOfSeveralHostCAs(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	cfg := c.config(t)
	cfg.HostCAs = []ssh.PublicKey{newTestCA(t).pub(), c.hostCA.pub()}
	client, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	client.Close()
}

func TestDialPermissionDenied(t *testing.T) {
	t.Parallel()
	userCA, hostCA, otherCA := newTestCA(t), newTestCA(t), newTestCA(t)
	login := currentLogin(t)
	const banner = "Authorized use only.\x1b[31m Ask #infra for access."
	srv := startSSHD(t, sshdOptions{userCA: userCA, hostCA: hostCA, hostNames: []string{testHostName}, banner: banner})

	tests := []struct {
		name   string
		signer ssh.Signer
	}{
		{"user cert from another CA", otherCA.userSigner(t, login)},
		{"user cert for another login", userCA.userSigner(t, "somebody-else")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, err := Dial(context.Background(), Config{
				User: login, Addr: srv.Addr, Signer: tt.signer,
				HostCAs: []ssh.PublicKey{hostCA.pub()}, HostName: testHostName, Timeout: patience.Left(t),
			})
			if err == nil {
				client.Close()
				t.Fatal("Dial succeeded with a certificate the server must refuse")
			}
			if !errors.Is(err, ErrPermissionDenied) {
				t.Errorf("errors.Is(%v, ErrPermissionDenied) = false", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "permission denied: ") {
				t.Errorf("error %q does not start with \"permission denied: \"", msg)
			}
			// The banner reaches the user, without its terminal escape.
			if !strings.Contains(msg, "Authorized use only.[31m Ask #infra for access.") {
				t.Errorf("error %q does not carry the server banner", msg)
			}
			if strings.ContainsRune(msg, '\x1b') {
				t.Errorf("error %q contains an escape character", msg)
			}
		})
	}
}

func TestDialUnreachable(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	port := testkit.FreePort(t) // nothing listens here any more
	_, err := Dial(context.Background(), Config{
		User: "u", Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Signer: ca.userSigner(t, "u"),
		HostCAs: []ssh.PublicKey{ca.pub()}, HostName: "n1", Timeout: 5 * time.Second,
	})
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("error = %v, want ErrUnreachable", err)
	}
	if want := "cannot reach n1: connect: connection refused"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

// silentListener accepts connections and never says anything.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestDialHandshakeTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	addr := silentListener(t)
	cfg := Config{User: "u", Addr: addr, Signer: ca.userSigner(t, "u"), HostCAs: []ssh.PublicKey{ca.pub()}}

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		cfg := cfg
		cfg.Timeout = 200 * time.Millisecond
		start := time.Now()
		_, err := Dial(context.Background(), cfg)
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "timed out during the SSH handshake") {
			t.Fatalf("error = %v, want a handshake timeout", err)
		}
		// At the configured timeout, not the default one: the margin
		// between the two is wide enough for any load.
		if d := time.Since(start); d > defaultTimeout/2 {
			t.Errorf("Dial took %v with a 200ms timeout (default %v)", d, defaultTimeout)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err := Dial(ctx, cfg)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	ok := Config{User: "u", Addr: "h:22", Signer: ca.signer, HostCAs: []ssh.PublicKey{ca.pub()}}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"valid", func(*Config) {}, ""},
		{"no user", func(c *Config) { c.User = "" }, "no login given"},
		{"no addr", func(c *Config) { c.Addr = "" }, "no address to dial"},
		{"no signer", func(c *Config) { c.Signer = nil }, "no certificate: log in first"},
		{"no host CA", func(c *Config) { c.HostCAs = nil }, "no trusted host CA: log in first to fetch the cluster's host CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.modify(&cfg)
			err := cfg.validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("validate() = %q, want %q", got, tt.want)
			}
		})
	}
}

// freezableConn stops delivering what the peer sends once frozen, like a
// network that silently drops packets.
type freezableConn struct {
	net.Conn
	mu     sync.Mutex
	frozen bool
	closed chan struct{}
	once   sync.Once
}

func (c *freezableConn) freeze() {
	c.mu.Lock()
	c.frozen = true
	c.mu.Unlock()
}

func (c *freezableConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	frozen := c.frozen
	c.mu.Unlock()
	if frozen {
		<-c.closed
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	frozen = c.frozen
	c.mu.Unlock()
	if frozen { // data that arrived after the freeze is lost
		<-c.closed
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *freezableConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func TestKeepaliveClosesDeadConnection(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	// A peer that answers keeps the connection open for several keepalive
	// intervals. It must answer within keepaliveMaxMissed intervals: an
	// interval a loaded machine cannot answer in is doubled and tried
	// again, up to one far beyond any answer's time.
	var client *ssh.Client
	var fc *freezableConn
	for interval := 100 * time.Millisecond; ; interval *= 2 {
		cfg := c.config(t)
		cfg.KeepaliveInterval = interval
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			fc = &freezableConn{Conn: conn, closed: make(chan struct{})}
			return fc, nil
		}
		var err error
		client, err = Dial(context.Background(), cfg)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer client.Close()
		time.Sleep(5 * interval) // several keepalives, answered
		code, err := Run(context.Background(), client, RunOptions{Command: "true"})
		if err == nil && code == 0 {
			break
		}
		if interval >= 10*time.Second {
			t.Fatalf("Run after keepalives = %d, %v; want 0, nil", code, err)
		}
		t.Logf("keepalives every %s closed a live connection (%v); again with a longer interval", interval, err)
	}

	fc.freeze()
	waited := make(chan struct{})
	go func() {
		_ = client.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(patience.Left(t)):
		t.Fatal("client still open long after the peer went silent")
	}
}

func TestCleanBanner(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"  hello\r\n  world\n", "hello world"},
		{"a\x1b]0;pwned\x07b", "a]0;pwnedb"},
		{"bad \xff utf8", "bad utf8"},
		{strings.Repeat("é", maxBannerLen), strings.Repeat("é", maxBannerLen/2) + "..."},
	}
	for _, tt := range tests {
		if got := cleanBanner(tt.in); got != tt.want {
			t.Errorf("cleanBanner(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
