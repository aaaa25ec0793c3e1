package proxy

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/storage/sqlite"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/tunnel"
)

// The names of the tunnel protocol that these tests speak as a node.
const (
	tunnelUser       = tunnel.User
	requestHeartbeat = tunnel.RequestHeartbeat
	dataMagic        = tunnel.DataMagic
)

type heartbeat = tunnel.Heartbeat

// events is an audit.Emitter that keeps what the proxy emits.
type events struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (e *events) Emit(_ context.Context, ev audit.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
	return nil
}

func (e *events) find(name string) []audit.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []audit.Event
	for _, ev := range e.evs {
		if ev.Event == name {
			out = append(out, ev)
		}
	}
	return out
}

// proxyEnv is the proxy's SSH side on a loopback port, with a real auth
// service (SQLite in a temporary directory) as its Directory: no node, no
// cluster.
type proxyEnv struct {
	t      *testing.T
	a      *auth.Server
	s      *Server
	addr   string
	audit  *events
	offset atomic.Int64 // added to the proxy's clock
}

func newProxyEnv(t *testing.T, mods ...func(*Config)) *proxyEnv {
	t.Helper()
	ctx := context.Background()
	b, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "w.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	a, err := auth.New(ctx, auth.Config{ClusterName: "test", Backend: b, Audit: b.AuditLog(), PublicAddr: "proxy:3080"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	e := &proxyEnv{t: t, a: a, audit: &events{}}
	signer := newSigner(t)
	cert, err := a.Authority().IssueHost(ca.HostCertRequest{PublicKey: signer.PublicKey(), HostID: "proxy", Principals: []string{"proxy", "127.0.0.1"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	host, err := ssh.NewCertSigner(cert, signer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		HostSigner: host,
		UserCAs:    func() []ssh.PublicKey { return []ssh.PublicKey{a.Authority().UserCAPublicKey()} },
		HostCAs:    func() []ssh.PublicKey { return []ssh.PublicKey{a.Authority().HostCAPublicKey()} },
		Directory:  a,
		Audit:      e.audit,
		Now:        func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
	}
	for _, m := range mods {
		m(&cfg)
	}
	e.s, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.SetInventory(e.s.Registry())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.s.Serve(ln) }()
	t.Cleanup(func() {
		e.s.Close()
		ln.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// userSigner is a key with a user certificate from the cluster's user CA.
func (e *proxyEnv) userSigner(name string) ssh.Signer {
	e.t.Helper()
	s := newSigner(e.t)
	cert, err := e.a.Authority().IssueUser(ca.UserCertRequest{PublicKey: s.PublicKey(), Username: name,
		Principals: []string{name, ca.InternalPrincipalPrefix + name}, Roles: []string{"access"}, TTL: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(cert, s)
	if err != nil {
		e.t.Fatal(err)
	}
	return cs
}

// addUser creates and signs up a user with roles in auth.
func (e *proxyEnv) addUser(name string, roles ...string) {
	e.t.Helper()
	ctx := context.Background()
	inv, err := e.a.CreateUser(ctx, auth.AdminCaller(), auth.CreateUserRequest{Name: name, Roles: roles, Logins: []string{name}})
	if err != nil {
		e.t.Fatal(err)
	}
	ch, err := e.a.BeginSignup(ctx, auth.SignupRequest{Token: inv.Token})
	if err != nil {
		e.t.Fatal(err)
	}
	code, err := identity.TOTPCode(ch.Secret, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.a.CompleteSignup(ctx, auth.SignupRequest{Token: inv.Token, Password: "a good long password", OTP: code}); err != nil {
		e.t.Fatal(err)
	}
}

// dial logs in to the proxy as user with signer; banner collects what the
// proxy said before refusing.
func (e *proxyEnv) dial(user string, signer ssh.Signer) (*ssh.Client, string, error) {
	e.t.Helper()
	var banner strings.Builder
	cfg := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: (&ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
			return string(k.Marshal()) == string(e.a.Authority().HostCAPublicKey().Marshal())
		}}).CheckHostKey,
		HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01},
		BannerCallback:    func(m string) error { banner.WriteString(m); return nil },
		Timeout:           patience.Left(e.t)}
	c, err := ssh.Dial("tcp", e.addr, cfg)
	if err == nil {
		e.t.Cleanup(func() { c.Close() })
	}
	return c, banner.String(), err
}

// TestProxyAcceptsOnlyWardenCertificates: users jump with user
// certificates of the cluster, within their validity; nodes open tunnels
// with host certificates. Everything else is refused, certificates with
// the reason in a banner (which OpenSSH shows).
func TestProxyAcceptsOnlyWardenCertificates(t *testing.T) {
	e := newProxyEnv(t)
	foreign := func() ssh.Signer {
		caKey, s := newSigner(t), newSigner(t)
		cert := &ssh.Certificate{Key: s.PublicKey(), CertType: ssh.UserCert, KeyId: "alice",
			ValidPrincipals: []string{"alice", ca.InternalPrincipalPrefix + "alice"},
			ValidAfter:      uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
		if err := cert.SignCert(rand.Reader, caKey); err != nil {
			t.Fatal(err)
		}
		cs, err := ssh.NewCertSigner(cert, s)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	hostSigner := func() ssh.Signer {
		s := newSigner(t)
		cert, err := e.a.Authority().IssueHost(ca.HostCertRequest{PublicKey: s.PublicKey(), HostID: "node1", Principals: []string{"node1"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		cs, err := ssh.NewCertSigner(cert, s)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	for _, tc := range []struct {
		name   string
		user   string
		signer ssh.Signer
		clock  time.Duration // the proxy's clock, ahead of the real one
		banner string        // "" means accepted; "-" refused without a banner
	}{
		{name: "user certificate", user: "alice", signer: e.userSigner("alice")},
		{name: "plain key", user: "alice", signer: newSigner(t), banner: "-"},
		{name: "another CA", user: "alice", signer: foreign(), banner: "not signed by this Warden cluster"},
		{name: "expired", user: "alice", signer: e.userSigner("alice"), clock: 2 * time.Hour, banner: "expired; run warden login"},
		{name: "not yet valid", user: "alice", signer: e.userSigner("alice"), clock: -time.Hour, banner: "not valid yet"},
		{name: "host certificate as a user", user: "alice", signer: hostSigner(), banner: "a host certificate cannot log in as a user"},
		{name: "user certificate for a tunnel", user: tunnelUser, signer: e.userSigner("alice"), banner: "-"},
		{name: "host certificate for a tunnel", user: tunnelUser, signer: hostSigner()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.offset.Store(int64(tc.clock))
			defer e.offset.Store(0)
			c, banner, err := e.dial(tc.user, tc.signer)
			switch {
			case tc.banner == "" && err != nil:
				t.Fatalf("refused: %v (banner %q)", err, banner)
			case tc.banner == "":
				c.Close()
			case err == nil:
				t.Fatal("accepted")
			case tc.banner == "-" && banner != "":
				t.Errorf("banner %q for a key a client may just be trying", banner)
			case tc.banner != "-" && (!strings.HasPrefix(banner, "warden: ") || !strings.Contains(banner, tc.banner)):
				t.Errorf("banner %q, want %q", banner, tc.banner)
			}
		})
	}
}

// readRefusal reads what the proxy sends inside a refused jump channel
// (RefusalStream) and returns it as text.
func readRefusal(t *testing.T, ch ssh.Channel) string {
	t.Helper()
	r := bufio.NewReader(ch)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
		t.Fatalf("refusal starts with %q, %v", line, err)
	}
	rest := make([]byte, 4096)
	n, _ := r.Read(rest)
	return string(rest[:n])
}

// TestJumpRefusals: a user connection is for jumping only; a jump to a
// node the user cannot reach, or by a user auth no longer knows, is
// refused with the reason inside the channel, as the node would refuse
// it.
func TestJumpRefusals(t *testing.T) {
	e := newProxyEnv(t)
	e.addUser("alice", "access")
	alice, _, err := e.dial("alice", e.userSigner("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.OpenChannel("session", nil); err == nil || !strings.Contains(err.Error(), "not a shell") {
		t.Errorf("session channel: %v", err)
	}
	ch, err := alice.Dial("tcp", "nowhere:22")
	if err != nil {
		t.Fatal(err)
	}
	if got := readRefusal(t, ch.(ssh.Channel)); !strings.Contains(got, `warden: node "nowhere" not found`) {
		t.Errorf("jump to an unknown node: %q", got)
	}
	ch.Close()
	if ok, _, err := alice.SendRequest("tcpip-forward", true, nil); ok || err != nil {
		t.Errorf("tcpip-forward: %v, %v; want refused", ok, err)
	}

	ghost, _, err := e.dial("ghost", e.userSigner("ghost"))
	if err != nil {
		t.Fatal(err)
	}
	ch, err = ghost.Dial("tcp", "nowhere:22")
	if err != nil {
		t.Fatal(err)
	}
	if got := readRefusal(t, ch.(ssh.Channel)); !strings.Contains(got, `user "ghost" no longer exists`) {
		t.Errorf("jump by a user auth does not know: %q", got)
	}
	ch.Close()
}

// TestLimits: connections still in the SSH handshake are bounded (more are
// dropped at once) and timed out; forwards per user connection are
// bounded, and a slot is free again once its forward ends.
func TestLimits(t *testing.T) {
	t.Run("unauthenticated", func(t *testing.T) {
		e := newProxyEnv(t, func(c *Config) { c.MaxUnauthenticated = 1; c.HandshakeTimeout = patience.Left(t) })
		held := dialRaw(t, e.addr)
		if line := readLine(t, held); !strings.HasPrefix(line, "SSH-2.0-Warden") {
			t.Fatalf("first connection: %q", line)
		}
		dropped := dialRaw(t, e.addr)
		if line := readLine(t, dropped); line != "" {
			t.Errorf("a connection over the limit was served: %q", line)
		}
		held.Close()
		testkit.WaitFor(t, "a connection to be served after the held one ended", func() bool {
			c := dialRaw(t, e.addr)
			defer c.Close()
			return strings.HasPrefix(readLine(t, c), "SSH-2.0-Warden")
		})
	})
	t.Run("handshake timeout", func(t *testing.T) {
		e := newProxyEnv(t, func(c *Config) { c.HandshakeTimeout = 100 * time.Millisecond })
		c := dialRaw(t, e.addr)
		readLine(t, c) // the proxy's version; then nothing from us
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("a silent client was not dropped: %v", err)
		}
	})
	t.Run("forwards per connection", func(t *testing.T) {
		e := newProxyEnv(t, func(c *Config) { c.MaxChannelsPerConn = 1 })
		e.addUser("alice", "access")
		alice, _, err := e.dial("alice", e.userSigner("alice"))
		if err != nil {
			t.Fatal(err)
		}
		// A refused jump holds its slot until the client hangs up.
		first, err := alice.Dial("tcp", "nowhere:22")
		if err != nil {
			t.Fatal(err)
		}
		readRefusal(t, first.(ssh.Channel))
		_, err = alice.Dial("tcp", "nowhere:22")
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || oce.Reason != ssh.ResourceShortage || !strings.Contains(oce.Message, "max 1") {
			t.Fatalf("second forward: %v", err)
		}
		first.Close()
		testkit.WaitFor(t, "the slot to be free again", func() bool {
			c, err := alice.Dial("tcp", "nowhere:22")
			if err != nil {
				return false
			}
			c.Close()
			return true
		})
	})
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(patience.Left(t)))
	return c
}

// readLine reads the peer's first line ("" if it closed first).
func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	line, err := bufio.NewReader(c).ReadString('\n')
	if isTimeout(err) {
		t.Fatalf("no answer from the proxy: %v", err)
	}
	return line
}

// TestTunnelRegistry: a joined node's tunnel lists it, with the labels of
// its first heartbeat, for as long as the tunnel is up; a reconnect
// replaces the old tunnel; a node may not open channels on the proxy.
func TestTunnelRegistry(t *testing.T) {
	e := newProxyEnv(t)
	ctx := context.Background()
	tok, err := e.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: "node", TTL: time.Hour, Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	key := newSigner(t)
	joined, err := e.a.JoinNode(ctx, auth.JoinRequest{Token: tok.Token, Name: "web1", Hostname: "web1.example.test",
		PublicKey: string(ssh.MarshalAuthorizedKey(key.PublicKey()))})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(joined.SSHCert))
	if err != nil {
		t.Fatal(err)
	}
	node, err := ssh.NewCertSigner(pub.(*ssh.Certificate), key)
	if err != nil {
		t.Fatal(err)
	}
	listed := func() []auth.Node { return e.s.Registry().Nodes() }

	tunnel, _, err := e.dial(tunnelUser, node)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tunnel.OpenChannel("session", nil); err == nil {
		t.Error("a node opened a channel on the proxy")
	}
	if len(listed()) != 0 {
		t.Error("a node is listed before its first heartbeat")
	}
	send := func(c *ssh.Client, hb any) (bool, string) {
		p, err := json.Marshal(hb)
		if err != nil {
			t.Fatal(err)
		}
		ok, reply, err := c.SendRequest(requestHeartbeat, true, p)
		if err != nil {
			t.Fatal(err)
		}
		return ok, string(reply)
	}
	if ok, reply := send(tunnel, heartbeat{Labels: map[string]string{"": "x"}}); ok || !strings.Contains(reply, "invalid label") {
		t.Errorf("heartbeat with an empty label: %v %q", ok, reply)
	}
	if ok, _ := send(tunnel, heartbeat{Labels: map[string]string{"env": "dev"}, Version: "1.2.3"}); !ok {
		t.Fatal("heartbeat refused")
	}
	nodes := listed()
	if len(nodes) != 1 || nodes[0].ID != joined.NodeID || nodes[0].Name != "web1" || nodes[0].Labels["env"] != "dev" || nodes[0].Version != "1.2.3" {
		t.Fatalf("registry: %+v", nodes)
	}
	if got, err := e.a.ListNodes(ctx, auth.AdminCaller(), map[string]string{"env": "dev"}); err != nil || len(got) != 1 {
		t.Errorf("auth's inventory: %+v, %v", got, err)
	}
	if ok, _ := send(tunnel, heartbeat{Labels: map[string]string{"env": "prod"}}); !ok || listed()[0].Labels["env"] != "prod" {
		t.Errorf("labels after a second heartbeat: %+v", listed())
	}

	// The node reconnects before the old tunnel is gone: the new one
	// replaces it, and the old one is closed.
	again, _, err := e.dial(tunnelUser, node)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := send(again, heartbeat{Labels: map[string]string{"env": "dev"}}); !ok {
		t.Fatal("heartbeat on the new tunnel refused")
	}
	waitClosed := make(chan error, 1)
	go func() { waitClosed <- tunnel.Wait() }()
	select {
	case <-waitClosed:
	case <-time.After(patience.Left(t)):
		t.Fatal("the replaced tunnel was not closed")
	}
	if nodes := listed(); len(nodes) != 1 || nodes[0].Labels["env"] != "dev" {
		t.Errorf("registry after the reconnect: %+v", nodes)
	}
	again.Close()
	testkit.WaitFor(t, "the node to leave the registry", func() bool { return len(listed()) == 0 })
}

// TestLocksCutRelays: a lock that matches a relayed connection cuts it
// (after the lock grace; here at once) and is audited; a relay that has
// ended is not cut; a relay added while a lock already matches is cut at
// once.
func TestLocksCutRelays(t *testing.T) {
	e := newProxyEnv(t, func(c *Config) { c.LockGrace = -1 })
	ctx := context.Background()
	var cuts sync.Map
	// relayOf adds a relay, named id, of user's connection to web1.
	relayOf := func(id, user string) func() {
		return e.s.addRelay(newRelay(lock.Subject{User: user, Node: "web1"}, "192.0.2.1:5555", func() { cuts.Store(id, true) }))
	}
	cut := func(id string) bool { _, ok := cuts.Load(id); return ok }
	endAlice := relayOf("alice", "alice")
	defer endAlice()
	endBob := relayOf("bob", "bob")
	endCarol := relayOf("carol", "carol")
	endCarol() // carol's session ended before the locks

	for _, u := range []string{"alice", "carol"} {
		if _, err := e.a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: u}, Message: "stop"}); err != nil {
			t.Fatal(err)
		}
	}
	e.s.ReverifyLocks()
	testkit.WaitFor(t, "alice's relay to be cut", func() bool { return cut("alice") })
	testkit.WaitFor(t, "the proxy.disconnect event", func() bool { return len(e.audit.find(audit.ProxyDisconnect)) == 1 })
	ev := e.audit.find(audit.ProxyDisconnect)[0]
	if ev.User != "alice" || ev.Node != "web1" || ev.RemoteAddr != "192.0.2.1:5555" || !strings.Contains(ev.Error, "stop") {
		t.Errorf("event %+v", ev)
	}
	if cut("bob") || cut("carol") {
		t.Error("a relay no lock matches, or one that had ended, was cut")
	}
	endBob()

	endLater := relayOf("alice later", "alice")
	defer endLater()
	if !cut("alice later") {
		t.Error("a relay added under a lock was not cut at once")
	}
}
