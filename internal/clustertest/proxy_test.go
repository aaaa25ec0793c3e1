//go:build integration

package clustertest

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/tunnel"
)

// listeningSockets counts TCP sockets in LISTEN state owned by this process.
func listeningSockets(t *testing.T) int {
	t.Helper()
	listen := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 9 && fields[3] == "0A" {
				listen[fields[9]] = true
			}
		}
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok && listen[strings.TrimSuffix(ino, "]")] {
			n++
		}
	}
	return n
}

// TestProxyEndToEnd: a node joined with a token opens no port; users reach it
// only through the proxy, with the real OpenSSH client (ssh, scp, sftp,
// rsync, ansible), and by label.
func TestProxyEndToEnd(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NoNode: true})
	before := listeningSockets(t)
	if before < 1 {
		t.Fatalf("the proxy's listener is not visible (%d)", before)
	}
	web := c.StartNode("web1", map[string]string{"env": "prod", "team": "a"})
	c.StartNode("db1", map[string]string{"env": "prod", "team": "b"})
	c.WaitForNodes(2)
	if after := listeningSockets(t); after != before {
		t.Fatalf("joining nodes opened %d listening ports", after-before)
	}
	if web.Addr() != "" {
		t.Fatalf("node listens on %s", web.Addr())
	}

	u := c.AddUser("alice", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)

	r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@web1", "whoami")...)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != osLogin {
		t.Fatalf("ssh via proxy: %s", r)
	}
	// By label, with a unique match.
	r = c.Warden(home, nil, "ssh", osLogin+"@web1", "hostname >/dev/null && echo ok")
	if r.Code != 0 || !strings.Contains(r.Stdout, "ok") {
		t.Fatalf("warden ssh via proxy: %s", r)
	}
	// The relaying form (no fd passing) works too.
	r = Run(t, nil, "ssh", sshArgs(cfg, "-o", "ProxyUseFdpass=no", "-o", "ProxyCommand="+WardenBinary+" --home "+home+" proxy ssh %r@team=b", osLogin+"@db1", "echo via-label")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "via-label") {
		t.Fatalf("ssh by label: %s", r)
	}
	// An ambiguous label and an unknown node are refused with candidates.
	r = c.Warden(home, nil, "proxy", "ssh", osLogin+"@env=prod:22")
	if r.Code == 0 || !strings.Contains(r.Stderr, "matches 2 nodes") {
		t.Fatalf("ambiguous label: %s", r)
	}
	r = c.Warden(home, nil, "proxy", "ssh", osLogin+"@nope:22")
	if r.Code == 0 || !strings.Contains(r.Stderr, "db1, web1") {
		t.Fatalf("unknown node: %s", r)
	}

	t.Run("rsync", func(t *testing.T) {
		src := t.TempDir()
		for i := 0; i < 5; i++ {
			b := make([]byte, 10000+i)
			rand.Read(b)
			os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), b, 0o644)
		}
		remote := "/tmp/warden-rsync-" + randHex(t)
		t.Cleanup(func() { os.RemoveAll(remote) })
		r := Run(t, nil, "rsync", "-a", "-e", "ssh "+strings.Join(sshArgs(cfg), " "), src+"/", osLogin+"@web1:"+remote+"/")
		if r.Code != 0 {
			t.Fatalf("rsync: %s", r)
		}
		for i := 0; i < 5; i++ {
			want, _ := os.ReadFile(filepath.Join(src, fmt.Sprintf("f%d", i)))
			assertSameFile(t, filepath.Join(remote, fmt.Sprintf("f%d", i)), want)
		}
	})
	t.Run("ansible ping", func(t *testing.T) {
		if _, err := os.Stat("/usr/bin/ansible"); err != nil {
			t.Fatal("ansible is required (apt-get install ansible)")
		}
		inv := filepath.Join(t.TempDir(), "hosts")
		os.WriteFile(inv, []byte("web1 ansible_user="+osLogin+"\n"), 0o644)
		cmd := Run(t, nil, "env", "ANSIBLE_HOST_KEY_CHECKING=True", "ANSIBLE_SSH_ARGS=-F "+cfg, "ANSIBLE_LOCAL_TEMP="+t.TempDir(),
			"ansible", "-i", inv, "web1", "-m", "ping")
		if cmd.Code != 0 || !strings.Contains(cmd.Stdout, "pong") {
			t.Fatalf("ansible ping: %s", cmd)
		}
	})
	t.Run("health and metrics", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, err := hc.Get("https://" + c.ProxyAddr() + path)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %v %v", path, err, resp)
			}
			resp.Body.Close()
		}
		// Not on the public port: on the local metrics listener.
		resp, err := hc.Get("https://" + c.ProxyAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("/metrics on the public port: %s", resp.Status)
		}
		resp, err = http.Get(c.MetricsURL())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "warden_proxy_tunnels_connected 2") || !strings.Contains(string(body), "warden_proxy_dial_seconds_count") {
			t.Fatalf("metrics:\n%.2000s", body)
		}
	})
}

// TestTunnelIdentityIsEnforced: a user certificate cannot open a tunnel, a
// host certificate cannot log in as a user, and plain keys get nowhere.
func TestTunnelIdentityIsEnforced(t *testing.T) {
	c := New(t, Options{NoNode: true})
	a := c.Proc.Auth().Authority()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	userCert, err := a.IssueUser(ca.UserCertRequest{PublicKey: signer.PublicKey(), Username: "mallory",
		Principals: []string{"dev", ca.InternalPrincipalPrefix + "mallory"}, Roles: []string{"access"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hostCert, err := a.IssueHost(ca.HostCertRequest{PublicKey: signer.PublicKey(), HostID: "n1", Principals: []string{"n1"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	connect := func(user string, s ssh.Signer) (*ssh.Client, error) {
		cfg := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(s)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: patience.Left(t)}
		return ssh.Dial("tcp", c.ProxyAddr(), cfg)
	}
	dial := func(user string, s ssh.Signer) error {
		conn, err := connect(user, s)
		if err == nil {
			conn.Close()
		}
		return err
	}
	us, _ := ssh.NewCertSigner(userCert, signer)
	hs, _ := ssh.NewCertSigner(hostCert, signer)
	if err := dial(tunnel.User, us); err == nil {
		t.Fatal("a user certificate opened a node tunnel")
	}
	if err := dial("dev", hs); err == nil {
		t.Fatal("a host certificate logged in as a user")
	}
	if err := dial("dev", signer); err == nil {
		t.Fatal("a plain key was accepted")
	}
	if err := dial("dev", us); err != nil {
		t.Fatalf("a valid user certificate was refused: %v", err)
	}
	// A host certificate of a node that never joined cannot register:
	// the proxy hangs up on its tunnel.
	tunnel, err := connect(tunnel.User, hs)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- tunnel.Wait() }()
	select {
	case <-closed:
	case <-time.After(patience.Left(t)):
		tunnel.Close()
		t.Fatal("the proxy kept the tunnel of a node that never joined")
	}
	nodes, _ := c.Admin.ListNodes(context.Background(), nil)
	if len(nodes) != 0 {
		t.Fatalf("unregistered node listed: %+v", nodes)
	}
}

// TestProxyBoundsUnauthenticatedConnections: silent clients are dropped
// after the handshake timeout, and the number of connections still in their
// handshake is bounded.
func TestProxyBoundsUnauthenticatedConnections(t *testing.T) {
	t.Run("handshake timeout", func(t *testing.T) {
		c := New(t, Options{NoNode: true, Proxy: service.ProxyConfig{HandshakeTimeout: time.Second}})
		// Slowloris: connect and say nothing.
		conn, err := net.Dial("tcp", c.ProxyAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(patience.Deadline(t))
		start := time.Now()
		if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("silent client not dropped: %v after %s", err, time.Since(start))
		}
		// At the configured timeout (1 s), not the default (10 s): the
		// margin between the two is wide enough for any load.
		if d := time.Since(start); d > 9*time.Second {
			t.Fatalf("silent client dropped after %s, as if the timeout were the default", d)
		}
	})
	t.Run("handshake slots", func(t *testing.T) {
		// The handshake timeout is beyond the test's patience: the held
		// connections keep their slots until the test closes them.
		c := New(t, Options{NoNode: true, Proxy: service.ProxyConfig{HandshakeTimeout: 24 * time.Hour, MaxUnauthenticated: 3}})
		// Fill the handshake slots with clients that send the SSH banner
		// and then stall; each has its slot once the server's banner
		// comes. The next one is closed at once.
		for range 3 {
			held, err := net.Dial("tcp", c.ProxyAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			held.Write([]byte("SSH-2.0-slow\r\n"))
			held.SetReadDeadline(patience.Deadline(t))
			if line, err := bufio.NewReader(held).ReadString('\n'); err != nil || !strings.HasPrefix(line, "SSH-") {
				t.Fatalf("connection within the limit: %q, %v", line, err)
			}
		}
		extra, err := net.Dial("tcp", c.ProxyAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer extra.Close()
		extra.Write([]byte("SSH-2.0-extra\r\n"))
		extra.SetReadDeadline(patience.Deadline(t))
		// The server's banner would arrive if a slot were free.
		line, err := bufio.NewReader(extra).ReadString('\n')
		switch {
		case err == nil && strings.HasPrefix(line, "SSH-"):
			t.Fatalf("connection beyond the limit got a handshake: %q", line)
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.Fatal("connection beyond the limit was neither served nor closed")
		}
	})
}

// TestProxyRestart: nodes reconnect by themselves when the proxy restarts,
// and nothing leaks.
func TestProxyRestart(t *testing.T) {
	EnsureOSUser(t, osLogin)
	ignore := goleak.IgnoreCurrent()
	fdsBefore := countFDs(t)
	t.Run("restart", func(t *testing.T) {
		dir := t.TempDir()
		c := New(t, Options{NoNode: true, DataDir: dir})
		addr := c.ProxyAddr()
		for i := 0; i < 3; i++ {
			c.StartNode(fmt.Sprintf("n%d", i), nil)
		}
		c.WaitForNodes(3)
		u := c.AddUser("bob", []string{"access"}, []string{osLogin})
		home := c.Login(u)
		c.Proc.Close()

		restart := time.Now()
		c2 := New(t, Options{NoNode: true, DataDir: dir, Proxy: service.ProxyConfig{Listen: addr}})
		c2.WaitForNodes(3)
		t.Logf("3 nodes back %s after the proxy restarted", time.Since(restart).Round(time.Millisecond))
		r := c2.Warden(home, nil, "ssh", osLogin+"@n1", "echo back")
		if r.Code != 0 || !strings.Contains(r.Stdout, "back") {
			t.Fatalf("ssh after proxy restart: %s", r)
		}
	})
	// The subtest's cleanups closed the cluster and the nodes.
	// The low-priority recording threads live as long as the process.
	// Goroutines that end just after the cluster closed are waited for.
	if err := patience.Retry(t, func() error { return goleak.Find(ignore, goleak.IgnoreAnyFunction(recording.PoolFunction)) }); err != nil {
		t.Fatalf("goroutines leaked: %v", err)
	}
	// Go keeps the pipes it splices through in a pool that only garbage
	// collection empties (a finalizer closes them, in its own time).
	err := patience.Retry(t, func() error {
		runtime.GC()
		if fdsAfter := countFDs(t); fdsAfter > fdsBefore+2 {
			return fmt.Errorf("file descriptors leaked: %d before, %d after", fdsBefore, fdsAfter)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }

// TestManySimulatedNodes: 200 in-process node agents on one proxy are all
// listed with their labels.
func TestManySimulatedNodes(t *testing.T) {
	c := New(t, Options{NoNode: true})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	const n = 200
	sims := SimulateNodes(t, c, n, func(i int) map[string]string {
		return map[string]string{"shard": fmt.Sprint(i % 4), "i": fmt.Sprint(i)}
	})
	for _, s := range sims {
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
	}
	c.WaitForNodes(n)
	nodes, err := c.Admin.ListNodes(ctx, map[string]string{"shard": "2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != n/4 {
		t.Fatalf("shard=2: %d nodes, want %d", len(nodes), n/4)
	}
	for _, nd := range nodes {
		if nd.Labels["shard"] != "2" || !strings.HasPrefix(nd.Name, "sim-") {
			t.Fatalf("bad node %+v", nd)
		}
	}
	res := c.Warden(t.TempDir(), nil, "--data-dir", c.DataDir, "audit", "search", "--type", "node.join", "--limit", "1000", "-o", "json")
	if got := strings.Count(res.Stdout, `"event":"node.join"`); got != n {
		t.Fatalf("node.join events: %d, want %d", got, n)
	}
	_ = auth.KindNode
}

// TestNodeRenewsCertificates: a node renews its host and API certificates
// before they expire, keeps its tunnel, and stays reachable past the first
// certificate's expiry.
func TestNodeRenewsCertificates(t *testing.T) {
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NoNode: true, Auth: service.AuthConfig{NodeCertTTL: 8 * time.Second}})
	n := c.StartNode("renewer", nil, func(cfg *nodeagent.Config) { cfg.RenewCheckInterval = 500 * time.Millisecond })
	c.WaitForNodes(1)
	u := c.AddUser("rn", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	time.Sleep(12 * time.Second) // past the first certificates' expiry
	r := c.Warden(home, nil, "ssh", osLogin+"@renewer", "echo still-here")
	if r.Code != 0 || !strings.Contains(r.Stdout, "still-here") {
		t.Fatalf("node unreachable after its first certificate expired: %s", r)
	}
	if !n.TunnelUp() {
		t.Fatal("tunnel down after renewal")
	}
	evs := c.Warden(t.TempDir(), nil, "audit", "search", "--type", "cert.issued", "--text", "renewer", "-o", "json")
	if got := strings.Count(evs.Stdout, `"cert_type":"host"`); got < 2 {
		t.Fatalf("host certificate issued %d times, want a renewal: %s", got, evs)
	}
}
