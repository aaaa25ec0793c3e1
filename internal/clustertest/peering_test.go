//go:build integration

package clustertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

// peered starts two all-in-one instances with proxy peering on one
// PostgreSQL database: A with an in-process node "node-a" (unless
// noNode), B without a node.
func peered(t testing.TB, noNodeA bool) (a, b *Cluster) {
	t.Helper()
	st, _ := postgresStorage(t)
	return peeredOn(t, st, noNodeA)
}

func peeredOn(t testing.TB, st service.StorageConfig, noNodeA bool) (a, b *Cluster) {
	t.Helper()
	auth := service.AuthConfig{AuditSigningKey: filepath.Join(t.TempDir(), "audit-signing-key.pem")}
	peer := service.ProxyConfig{PeerListen: "127.0.0.1:0"}
	a = New(t, Options{NodeName: "node-a", NoNode: noNodeA, Storage: st, Auth: auth, Proxy: peer})
	b = New(t, Options{NoNode: true, Storage: st, Auth: auth, Proxy: peer})
	return a, b
}

// TestProxyPeering: a user whose proxy is B reaches node-a, whose tunnel
// ends at proxy A, with OpenSSH (ProxyCommand and ssh -J), scp and warden
// ssh; the connections go through A's peer listener (B's "peer" node
// connections count them); a lock made through A ends that live session,
// and B refuses new ones until the unlock.
func TestProxyPeering(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	a, b := peered(t, false)
	u := a.AddUser("peeruser", []string{"access"}, []string{osLogin})
	home := b.Login(u)
	cfg := b.SSHConfig(home)
	jump := jumpConfig(t, b, home)

	// B lists node-a from the shared state.
	b.WaitForNodes(1)
	if r := b.Warden(home, nil, "ls"); r.Code != 0 || !strings.Contains(r.Stdout, "node-a") {
		t.Fatalf("warden ls through B: %s", r)
	}
	peer0 := nodeConnMetric(t, b, "peer")
	if r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@node-a", "echo via-peer")...); r.Code != 0 || !strings.Contains(r.Stdout, "via-peer") {
		t.Fatalf("ssh through B to node-a: %s", r)
	}
	if r := Run(t, nil, "ssh", sshArgs(jump, "-J", "wjump", osLogin+"@node-a", "echo via-jump")...); r.Code != 0 || !strings.Contains(r.Stdout, "via-jump") {
		t.Fatalf("ssh -J B node-a: %s", r)
	}
	if r := b.Warden(home, nil, "ssh", osLogin+"@node-a", "echo", "via-warden"); r.Code != 0 || !strings.Contains(r.Stdout, "via-warden") {
		t.Fatalf("warden ssh through B: %s", r)
	}

	// scp both ways, checked byte for byte.
	payload := make([]byte, 2<<20)
	rand.Read(payload)
	dir, err := os.MkdirTemp("", "warden-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	src, remote, back := filepath.Join(dir, "src"), filepath.Join(dir, "remote"), filepath.Join(dir, "back")
	if err := os.WriteFile(src, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := Run(t, nil, "scp", sshArgs(cfg, "-q", src, osLogin+"@node-a:"+remote)...); r.Code != 0 {
		t.Fatalf("scp to node-a through B: %s", r)
	}
	if r := Run(t, nil, "scp", sshArgs(cfg, "-q", osLogin+"@node-a:"+remote, back)...); r.Code != 0 {
		t.Fatalf("scp from node-a through B: %s", r)
	}
	got, err := os.ReadFile(back)
	if err != nil || string(got) != string(payload) {
		t.Fatalf("scp round trip through B corrupted the file (err %v)", err)
	}
	// Every connection above (ssh, ssh -J, warden ssh, 2 scp) went through A's peer listener.
	if n := nodeConnMetric(t, b, "peer") - peer0; n != 5 {
		t.Fatalf("B made %d peer connections; want 5 (ssh, ssh -J, warden ssh, 2 scp)", n)
	}

	// A lock made through A ends the live session (B -> A -> node-a).
	wait, arm := liveSession(t, sshArgs(cfg, osLogin+"@node-a", liveCommand))
	admin := t.TempDir()
	arm()
	id := lockID(t, a.Warden(admin, nil, "lock", "--user", "peeruser", "--message", "locked-via-a"))
	r, took := wait()
	if r.Code == 0 || !strings.Contains(r.Stderr, "locked-via-a") {
		t.Fatalf("the session through B to node-a did not end by the lock made through A: %s", r)
	}
	t.Logf("a lock through A ended a session B -> A -> node-a in %s", took.Round(time.Millisecond))
	if r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@node-a", "true")...); r.Code == 0 || !strings.Contains(r.Stderr, "locked-via-a") {
		t.Fatalf("a new session through B while locked: %s", r)
	}
	if r := a.Warden(admin, nil, "unlock", id); r.Code != 0 {
		t.Fatalf("unlock: %s", r)
	}
	testkit.WaitFor(t, "ssh through B after the unlock", func() bool {
		return Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@node-a", "true")...).Code == 0
	})
}

// TestPeerListenerRefusesNonProxies: the peer listener of a running
// instance completes a handshake only with a proxy's certificate from the
// cluster CA; the admin identity on disk, a node's and a user's
// certificates from the same CA are refused in the TLS handshake.
func TestPeerListenerRefusesNonProxies(t *testing.T) {
	a, _ := peered(t, true)
	authority := a.Proc.Auth().Authority()
	issue := func(id ca.TLSIdentity) tls.Certificate {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := authority.IssueTLSClient(&k.PublicKey, id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	adminID, err := idfile.Read(idfile.AdminPath(a.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	_, adminKey, err := adminID.Signer()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(adminID.TLSCert))
	if block == nil {
		t.Fatal("admin identity: no TLS certificate")
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	proxyDER, err := authority.IssueProxyPeer(&k.PublicKey, "proxy-test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	try := func(cert *tls.Certificate) error {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := tls.Dial("tcp", a.Proc.PeerAddr(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// A frame of garbage: a proxy is answered (with a refusal), anyone
		// else never gets that far.
		if _, err := c.Write([]byte("WPD1\x00\x00\x00\x02{}")); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, 1))
		return err
	}
	if err := try(&tls.Certificate{Certificate: [][]byte{proxyDER}, PrivateKey: k}); err != nil {
		t.Fatalf("a proxy's certificate: %v", err)
	}
	for name, cert := range map[string]*tls.Certificate{
		"admin identity": {Certificate: [][]byte{block.Bytes}, PrivateKey: adminKey},
		"node":           ptr(issue(ca.TLSIdentity{Kind: ca.KindNode, NodeID: "node-x"})),
		"user":           ptr(issue(ca.TLSIdentity{Kind: ca.KindUser, Username: "peeruser", Roles: []string{"access"}})),
		"none":           nil,
	} {
		err := try(cert)
		if err == nil || !strings.Contains(err.Error(), "remote error: tls:") {
			t.Errorf("%s: want the handshake refused, got %v", name, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// tcpRelay is a TCP load balancer with one backend at a time: SetTarget
// moves new connections and cuts the old ones.
type tcpRelay struct {
	ln     net.Listener
	target atomic.Pointer[string]
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func newTCPRelay(t testing.TB, target string) *tcpRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &tcpRelay{ln: ln, conns: map[net.Conn]struct{}{}}
	r.target.Store(&target)
	t.Cleanup(func() { ln.Close(); r.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	return r
}

func (r *tcpRelay) Addr() string { return r.ln.Addr().String() }

func (r *tcpRelay) SetTarget(addr string) {
	r.target.Store(&addr)
	r.cut()
}

func (r *tcpRelay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
}

func (r *tcpRelay) serve(c net.Conn) {
	up, err := net.Dial("tcp", *r.target.Load())
	if err != nil {
		c.Close()
		return
	}
	r.mu.Lock()
	r.conns[c], r.conns[up] = struct{}{}, struct{}{}
	r.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	c.Close()
	up.Close()
	r.mu.Lock()
	delete(r.conns, c)
	delete(r.conns, up)
	r.mu.Unlock()
}

// TestProxyPeeringFailover: a node joins through a load balancer that
// sends it to proxy A; a user at proxy B reaches it through A. A stops;
// the load balancer sends new connections to B; the node reconnects there
// by itself and the user at B reaches it again, now through B's own
// tunnel, and B no longer lists it behind A.
func TestProxyPeeringFailover(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	a, b := peered(t, true)
	lb := newTCPRelay(t, a.ProxyAddr())
	a.StartNode("node-lb", nil, func(cfg *nodeagent.Config) { cfg.ProxyAddr = lb.Addr() })
	u := a.AddUser("failover", []string{"access"}, []string{osLogin})
	home := b.Login(u)
	cfg := b.SSHConfig(home)
	b.WaitForNodes(1)
	peer0 := nodeConnMetric(t, b, "peer")
	if r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@node-lb", "echo before")...); r.Code != 0 || !strings.Contains(r.Stdout, "before") {
		t.Fatalf("ssh through B to the node behind A: %s", r)
	}
	if nodeConnMetric(t, b, "peer") != peer0+1 {
		t.Fatal("the session before the failover did not go through A")
	}
	if metricValue(t, b, "warden_proxy_tunnels_connected") != 0 {
		t.Fatal("B holds a tunnel before the failover")
	}

	lb.SetTarget(b.ProxyAddr())
	start := time.Now()
	a.Proc.Close()
	testkit.WaitFor(t, "the node to reconnect to B", func() bool {
		return metricValue(t, b, "warden_proxy_tunnels_connected") == 1
	})
	t.Logf("the node reconnected to B %s after A stopped", time.Since(start).Round(time.Millisecond))
	direct0 := nodeConnMetric(t, b, "direct") + nodeConnMetric(t, b, "tunnel")
	peer1 := nodeConnMetric(t, b, "peer")
	var r Result
	testkit.WaitFor(t, "ssh through B after the failover", func() bool {
		r = Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@node-lb", "echo after")...)
		return r.Code == 0
	})
	if !strings.Contains(r.Stdout, "after") {
		t.Fatalf("ssh after the failover: %s", r)
	}
	if nodeConnMetric(t, b, "direct")+nodeConnMetric(t, b, "tunnel") <= direct0 || nodeConnMetric(t, b, "peer") != peer1 {
		t.Fatal("after the failover B did not use its own tunnel")
	}
	nodes, err := b.Admin.ListNodes(context.Background(), nil)
	if err != nil || len(nodes) != 1 || nodes[0].Name != "node-lb" {
		t.Fatalf("B's inventory after the failover: %v %v", nodes, err)
	}
}

// BenchmarkPeerConnect: ssh + true to a node through the proxy holding its
// tunnel (A) against the same through the other proxy (B -> A), alternating
// in one run; reports the ratio.
func BenchmarkPeerConnect(b *testing.B) {
	EnsureOSUser(b, osLogin)
	st, _ := postgresStorage(b)
	ia, ib := peeredOn(b, st, false)
	u := ia.AddUser("bench", []string{"access"}, []string{osLogin})
	cfgA, cfgB := ia.SSHConfig(ia.Login(u)), ib.SSHConfig(ib.Login(u))
	ib.WaitForNodes(1)
	for _, cfg := range []string{cfgA, cfgB} { // warm up
		if r := Run(b, nil, "ssh", sshArgs(cfg, osLogin+"@node-a", "true")...); r.Code != 0 {
			b.Fatalf("warm-up: %s", r)
		}
	}
	var direct, peer time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if r := Run(b, nil, "ssh", sshArgs(cfgA, osLogin+"@node-a", "true")...); r.Code != 0 {
			b.Fatalf("direct: %s", r)
		}
		t1 := time.Now()
		if r := Run(b, nil, "ssh", sshArgs(cfgB, osLogin+"@node-a", "true")...); r.Code != 0 {
			b.Fatalf("peer: %s", r)
		}
		direct += t1.Sub(t0)
		peer += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(direct.Microseconds())/float64(b.N)/1000, "ms/direct")
	b.ReportMetric(float64(peer.Microseconds())/float64(b.N)/1000, "ms/peer")
	b.ReportMetric(float64(peer)/float64(direct), "peer/direct")
}

// BenchmarkPeerWatchPropagation: a lock written through instance A, and
// the time until a watch stream served by instance B (the stream a node
// behind B keeps) delivers it; p50 and p99 over the run.
func BenchmarkPeerWatchPropagation(b *testing.B) {
	st, _ := postgresStorage(b)
	ia, ib := peeredOn(b, st, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan string, 1024)
	go func() {
		_ = ib.Admin.Watch(ctx, func(ev api.WatchEvent) {
			if ev.Kind == "lock" && ev.Type == "put" && ev.Lock != nil {
				events <- ev.Lock.Message
			}
		})
	}()
	// Wait for the stream: locks until one arrives.
	deadline := time.Now().Add(30 * time.Second)
	for synced := false; !synced; {
		if time.Now().After(deadline) {
			b.Fatal("watch through B never delivered a lock")
		}
		if _, err := ia.Admin.CreateLock(ctx, wire.CreateLockRequest{Target: lockTarget("warmup"), Message: "warmup", TTL: time.Minute}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-events:
			synced = true
		case <-time.After(time.Second):
		}
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msg := "bench-" + time.Now().Format("150405.000000000")
		t0 := time.Now()
		if _, err := ia.Admin.CreateLock(ctx, wire.CreateLockRequest{Target: lockTarget("bench-user"), Message: msg, TTL: time.Minute}); err != nil {
			b.Fatal(err)
		}
		for got := ""; got != msg; {
			select {
			case got = <-events:
			case <-time.After(30 * time.Second):
				b.Fatal("lock event never arrived through B")
			}
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "ms-p50")
	b.ReportMetric(q(0.9), "ms-p90")
	b.ReportMetric(q(0.99), "ms-p99")
	b.ReportMetric(q(1), "ms-max")
}

func lockTarget(user string) lock.Target { return lock.Target{User: user} }

// TestProxyPeeringKilledProxy: proxy A is a separate `warden start`
// process, killed with SIGKILL (no cleanup of its shared state). A node
// behind a TCP relay (the load balancer) is reached through B -> A; after
// the kill the relay sends new connections to B, the node reconnects to B
// by itself and is reached there; B lists it once, and A's stale records
// leave the shared state when they expire (B reaps A's tunnel key).
func TestProxyPeeringKilledProxy(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	st, db := postgresStorage(t)
	signingKey := filepath.Join(t.TempDir(), "audit-signing-key.pem")
	// B first: it makes the cluster (CAs, signing key) that A joins.
	b := New(t, Options{NoNode: true, Storage: st, Auth: service.AuthConfig{AuditSigningKey: signingKey},
		Proxy: service.ProxyConfig{PeerListen: "127.0.0.1:0"}})
	dir := t.TempDir()
	aListen := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	cfg := fmt.Sprintf(`cluster_name: test
storage: {type: postgres, conn: %q, password_file: %q}
auth: {audit_signing_key: %q}
proxy: {listen: %q, peer_listen: "127.0.0.1:%d", metrics_addr: "off"}
`, st.Conn, st.PasswordFile, signingKey, aListen, testkit.FreePort(t))
	cfgPath := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(WardenBinary, "start", "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"), "--services", "auth,proxy")
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("proxy A output:\n%s", out.String())
		}
	})
	livePeers := func() []string {
		conn, err := pgx.Connect(context.Background(), db.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(context.Background(), `SELECT key FROM kv WHERE key LIKE '/peering/%' AND (expires IS NULL OR expires > $1) ORDER BY key`,
			time.Now().UnixNano())
		if err != nil {
			t.Fatal(err)
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	ready := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	testkit.WaitFor(t, "proxy A to be ready", func() bool {
		resp, err := ready.Get("https://" + aListen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if keys := livePeers(); len(keys) != 2 {
		t.Fatalf("shared state with A and B up: %v", keys)
	}

	lb := newTCPRelay(t, aListen)
	b.StartNode("node-k", nil, func(c *nodeagent.Config) { c.ProxyAddr = lb.Addr() })
	u := b.AddUser("killed", []string{"access"}, []string{osLogin})
	sshCfg := b.SSHConfig(b.Login(u))
	b.WaitForNodes(1)
	if metricValue(t, b, "warden_proxy_tunnels_connected") != 0 {
		t.Fatal("the node's tunnel is at B before the kill")
	}
	peer0 := nodeConnMetric(t, b, "peer")
	if r := Run(t, nil, "ssh", sshArgs(sshCfg, osLogin+"@node-k", "echo before")...); r.Code != 0 || !strings.Contains(r.Stdout, "before") {
		t.Fatalf("ssh through B to the node behind A: %s", r)
	}
	if nodeConnMetric(t, b, "peer") != peer0+1 {
		t.Fatal("the session before the kill did not go through A")
	}
	var tunnelKeyA string
	for _, k := range livePeers() {
		if strings.HasPrefix(k, "/peering/tunnels/") {
			tunnelKeyA = k
		}
	}
	if tunnelKeyA == "" {
		t.Fatalf("no tunnel key for the node behind A: %v", livePeers())
	}

	lb.SetTarget(b.ProxyAddr())
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	testkit.WaitFor(t, "the node to reconnect to B", func() bool {
		return metricValue(t, b, "warden_proxy_tunnels_connected") == 1
	})
	t.Logf("the node reconnected to B %s after A was killed", time.Since(start).Round(time.Millisecond))
	var r Result
	testkit.WaitFor(t, "ssh through B after the kill", func() bool {
		r = Run(t, nil, "ssh", sshArgs(sshCfg, osLogin+"@node-k", "echo after")...)
		return r.Code == 0
	})
	if !strings.Contains(r.Stdout, "after") {
		t.Fatalf("ssh after the kill: %s", r)
	}
	nodes, err := b.Admin.ListNodes(context.Background(), nil)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("B's inventory after the kill: %v %v", nodes, err)
	}
	// A's record expires (TTL) and B reaps the tunnel key A left.
	testkit.WaitFor(t, "A's stale keys to leave the shared state", func() bool {
		keys := livePeers()
		for _, k := range keys {
			if k == tunnelKeyA {
				return false
			}
		}
		return len(keys) == 2 // B's record and B's tunnel key
	})
	t.Logf("A's keys were gone %s after the kill", time.Since(start).Round(time.Millisecond))
}
