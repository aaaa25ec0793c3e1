package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/storage/sqlite"
	"github.com/warden-sh/warden/internal/testkit"
)

// peerEnv is a proxy with peering on (its shared state in a SQLite file)
// and its peer listener on a loopback port.
type peerEnv struct {
	*proxyEnv
	peerAddr string
}

func newPeerEnv(t *testing.T) *peerEnv {
	t.Helper()
	b, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "peers.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	var e *proxyEnv
	e = newProxyEnv(t, func(c *Config) {
		c.Peering = &PeerConfig{ID: "proxy-a", Addr: "127.0.0.1:1", Store: b,
			Certificate: func() (*tls.Certificate, error) { return issuePeerCert(t, e.a.Authority(), "proxy-a"), nil },
			Roots:       func() *x509.CertPool { return e.a.Authority().CertPool() }}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.s.ServePeers(ln) }()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	// proxy-b, the tests' dialling peer, is a live peer.
	v, _ := json.Marshal(proxyRecord{ID: "proxy-b", Addr: "127.0.0.1:2"})
	if _, err := b.Put(context.Background(), storage.Item{Key: peerProxiesPrefix + "proxy-b", Value: v, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "proxy-b to be a live peer", func() bool { return e.s.peers.live("proxy-b") })
	return &peerEnv{proxyEnv: e, peerAddr: ln.Addr().String()}
}

func tlsKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func issuePeerCert(t testing.TB, a *ca.Authority, id string) *tls.Certificate {
	k := tlsKey(t)
	der, err := a.IssueProxyPeer(&k.PublicKey, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

func issueClientCert(t testing.TB, a *ca.Authority, id ca.TLSIdentity) *tls.Certificate {
	k := tlsKey(t)
	der, err := a.IssueTLSClient(&k.PublicKey, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

func validDial() *PeerDial {
	return &PeerDial{NodeID: "node-1", ClientAddr: "192.0.2.1:5555",
		Caller: PeerCaller{User: "alice", Roles: []string{"access"}, Issued: time.Unix(1700000000, 0).UTC(),
			Expires: time.Unix(1700003600, 0).UTC()}}
}

// peerAttempt connects to the peer listener with cert (nil: none), sends
// a valid dial and returns what the listener answered.
func peerAttempt(t *testing.T, addr string, cert *tls.Certificate) error {
	t.Helper()
	return peerAttemptDial(t, addr, cert, validDial())
}

func peerAttemptDial(t *testing.T, addr string, cert *tls.Certificate, d *PeerDial) error {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	frame, err := encodePeerDial(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(frame); err != nil {
		return err
	}
	return readPeerReply(c)
}

// TestPeerListenerRefusesNonProxies: the peer listener serves a proxy's
// certificate from the cluster CA (its dial reaches the node lookup), and
// refuses, before reading a byte of the request, a node's, a user's and
// an admin's certificate from the same CA, a proxy certificate from
// another CA, and no certificate.
func TestPeerListenerRefusesNonProxies(t *testing.T) {
	e := newPeerEnv(t)
	a := e.a.Authority()
	err := peerAttempt(t, e.peerAddr, issuePeerCert(t, a, "proxy-b"))
	var refused errPeerRefused
	if !errors.As(err, &refused) {
		t.Fatalf("a proxy's certificate: want the node lookup's refusal, got %v", err)
	}
	keys, err := ca.GenerateKeys("other")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.New(keys, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]*tls.Certificate{
		"node":                  issueClientCert(t, a, ca.TLSIdentity{Kind: ca.KindNode, NodeID: "node-1"}),
		"user":                  issueClientCert(t, a, ca.TLSIdentity{Kind: ca.KindUser, Username: "alice", Roles: []string{"access"}}),
		"admin":                 issueClientCert(t, a, ca.TLSIdentity{Kind: ca.KindAdmin, Username: "admin", Roles: []string{"admin"}}),
		"proxy of another CA":   issuePeerCert(t, other, "proxy-b"),
		"no certificate at all": nil,
	} {
		err := peerAttempt(t, e.peerAddr, cert)
		if err == nil || errors.As(err, &refused) || !strings.Contains(err.Error(), "remote error: tls:") {
			t.Errorf("%s certificate: the peer listener answered the dial (%v); want the TLS handshake refused", name, err)
		} else {
			t.Logf("%s certificate: %v", name, err)
		}
	}
}

// TestPeerChecksLocksItself: the proxy receiving a forwarded dial checks
// the current state itself, whatever the dialling proxy decided: a user
// locked here is refused with the lock's message.
func TestPeerChecksLocksItself(t *testing.T) {
	e := newPeerEnv(t)
	e.addUser("alice", "access")
	cert := issuePeerCert(t, e.a.Authority(), "proxy-b")
	d := validDial()
	d.Caller.Issued, d.Caller.Expires = time.Now().UTC(), time.Now().Add(time.Hour).UTC()
	err := peerAttemptDial(t, e.peerAddr, cert, d)
	if err == nil || !strings.Contains(err.Error(), "not connected to proxy proxy-a") {
		t.Fatalf("before the lock: want the node lookup's refusal, got %v", err)
	}
	expired := *d
	expired.Caller.Issued, expired.Caller.Expires = time.Now().Add(-2*time.Hour).UTC(), time.Now().Add(-time.Hour).UTC()
	if err := peerAttemptDial(t, e.peerAddr, cert, &expired); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired certificate's forwarded dial: %v", err)
	}
	// A proxy with a valid peering certificate that is not a live peer
	// (never registered, or revoked and unable to renew its record).
	if err := peerAttemptDial(t, e.peerAddr, issuePeerCert(t, e.a.Authority(), "proxy-c"), d); err == nil || !strings.Contains(err.Error(), "not a live peer") {
		t.Fatalf("a dial from a proxy that is not a live peer: %v", err)
	}
	if _, err := e.a.CreateLock(context.Background(), auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "alice"}, Message: "peer-stop"}); err != nil {
		t.Fatal(err)
	}
	err = peerAttemptDial(t, e.peerAddr, cert, d)
	var refused errPeerRefused
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "peer-stop") {
		t.Fatalf("a locked user's forwarded dial: want the lock's refusal, got %v", err)
	}
	// A lock on the dialling proxy (warden lock --node PROXY-ID).
	if _, err := e.a.CreateLock(context.Background(), auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{Node: "proxy-b"}, Message: "proxy-stop"}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "a dial from the locked proxy to be refused", func() bool {
		err := peerAttemptDial(t, e.peerAddr, cert, d)
		return err != nil && strings.Contains(err.Error(), "proxy proxy-b is locked")
	})
}

// TestPeerDialChecksPeerID: a proxy dialling a peer checks that the
// certificate there is that peer's: another proxy's certificate at the
// address is refused.
func TestPeerDialChecksPeerID(t *testing.T) {
	e := newPeerEnv(t)
	c, err := tls.Dial("tcp", e.peerAddr, e.s.peers.clientTLS("proxy-z"))
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), `is proxy "proxy-a", not "proxy-z"`) {
		t.Fatalf("dial of the wrong peer: %v", err)
	}
	c, err = tls.Dial("tcp", e.peerAddr, e.s.peers.clientTLS("proxy-a"))
	if err != nil {
		t.Fatalf("dial of the right peer: %v", err)
	}
	c.Close()
}

func TestPeerDialWire(t *testing.T) {
	frame, err := encodePeerDial(validDial())
	if err != nil {
		t.Fatal(err)
	}
	d, err := readPeerDial(bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	if d.NodeID != "node-1" || d.Caller.User != "alice" || !d.Caller.Issued.Equal(validDial().Caller.Issued) {
		t.Fatalf("round trip: %+v", d)
	}
	bad := map[string]func(*PeerDial){
		"node id with a slash":        func(d *PeerDial) { d.NodeID = "../x" },
		"empty node id":               func(d *PeerDial) { d.NodeID = "" },
		"client address":              func(d *PeerDial) { d.ClientAddr = "example.com:22" },
		"username":                    func(d *PeerDial) { d.Caller.User = "alice\n" },
		"role":                        func(d *PeerDial) { d.Caller.Roles = []string{"a b"} },
		"no issue time":               func(d *PeerDial) { d.Caller.Issued = time.Time{} },
		"expires before issue":        func(d *PeerDial) { d.Caller.Expires = d.Caller.Issued.Add(-time.Second) },
		"kube cluster name":           func(d *PeerDial) { d.Kube = "-k1/../x" },
		"join mode without a session": func(d *PeerDial) { d.KubeJoinMode = "peer" },
		"join with a node":            func(d *PeerDial) { d.KubeSession, d.KubeJoinMode = "a-b", "peer" },
		"join with a cluster": func(d *PeerDial) {
			d.NodeID, d.Kube, d.KubeSession, d.KubeJoinMode = "", "k1", "a-b", "peer"
		},
		"join session id": func(d *PeerDial) { d.NodeID, d.KubeSession, d.KubeJoinMode = "", "../x", "peer" },
		"join session id too long": func(d *PeerDial) {
			d.NodeID, d.KubeSession, d.KubeJoinMode = "", strings.Repeat("a", maxKubeSessionID+1), "peer"
		},
		"join mode": func(d *PeerDial) { d.NodeID, d.KubeSession, d.KubeJoinMode = "", "a-b", "owner" },
	}
	join := validDial()
	join.NodeID, join.KubeSession, join.KubeJoinMode = "", "0a1b2c3d-0000-1111-2222-333344445555", "observer"
	if js, _ := json.Marshal(join); func() error { _, err := parsePeerDial(js); return err }() != nil {
		t.Errorf("a valid kube join refused: %s", js)
	}
	for name, mod := range bad {
		d := validDial()
		mod(d)
		js, _ := json.Marshal(d)
		if _, err := parsePeerDial(js); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Unknown fields, oversized and truncated frames.
	js, _ := json.Marshal(validDial())
	if _, err := parsePeerDial(append(js[:len(js)-1], []byte(`,"admin":true}`)...)); err == nil {
		t.Error("unknown field accepted")
	}
	big := append([]byte(peerMagic), binary.BigEndian.AppendUint32(nil, maxPeerRequest+1)...)
	if _, err := readPeerDial(bytes.NewReader(big)); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("oversized frame: %v", err)
	}
	if _, err := readPeerDial(bytes.NewReader(frame[:len(frame)-1])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated frame: %v", err)
	}
	if err := readPeerReply(bytes.NewReader(peerRefusal(strings.Repeat("x", 5000)))); err == nil || len(err.Error()) != maxPeerRefusal {
		t.Errorf("long refusal: %v", err)
	}
}

// FuzzPeerDial: any bytes either fail to parse or give a dial whose fields
// are valid, bounded, and survive a round trip unchanged.
func FuzzPeerDial(f *testing.F) {
	frame, _ := encodePeerDial(validDial())
	f.Add(frame)
	f.Add(frame[8:])
	kube := validDial()
	kube.Kube = "k1"
	kframe, _ := encodePeerDial(kube)
	f.Add(kframe)
	join := validDial()
	join.NodeID, join.KubeSession, join.KubeJoinMode = "", "0a1b2c3d-0000-1111", "peer"
	jframe, _ := encodePeerDial(join)
	f.Add(jframe)
	f.Add([]byte(peerMagic + "\x00\x00\x00\x02{}"))
	f.Add(append([]byte(peerMagic), binary.BigEndian.AppendUint32(nil, 1<<31)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range [][]byte{b, append(append([]byte(peerMagic), binary.BigEndian.AppendUint32(nil, uint32(len(b)))...), b...)} {
			d, err := readPeerDial(bytes.NewReader(in))
			if err != nil {
				continue
			}
			if err := d.validate(); err != nil {
				t.Fatalf("parsed but invalid: %v", err)
			}
			if len(d.NodeID) > maxPeerNodeID || len(in) > maxPeerRequest+8 {
				t.Fatalf("unbounded: %d %d", len(d.NodeID), len(in))
			}
			again, err := encodePeerDial(d)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			d2, err := readPeerDial(bytes.NewReader(again))
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			j1, _ := json.Marshal(d)
			j2, _ := json.Marshal(d2)
			if !bytes.Equal(j1, j2) {
				t.Fatalf("round trip changed the dial:\n%s\n%s", j1, j2)
			}
		}
		_ = readPeerReply(bytes.NewReader(b))
	})
}

// TestPeeringState: two proxies on one store. A node's tunnel at A, with
// its labels, shows in B's inventory with A as its owner, and leaves it
// when the tunnel closes; a proxy that died without cleaning up (its
// record expired) is no one's owner any more, and its keys are reaped.
func TestPeeringState(t *testing.T) {
	ctx := context.Background()
	sb, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "shared.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	peer := func(id string) func(*Config) {
		return func(c *Config) {
			c.Peering = &PeerConfig{ID: id, Addr: "127.0.0.1:1", Store: sb, Heartbeat: 50 * time.Millisecond, TTL: time.Second,
				Certificate: func() (*tls.Certificate, error) { return nil, errors.New("unused") },
				Roots:       x509.NewCertPool}
		}
	}
	a := newProxyEnv(t, peer("proxy-a"))
	b := newProxyEnv(t, peer("proxy-b"))
	tok, err := a.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: "node", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	key := newSigner(t)
	joined, err := a.a.JoinNode(ctx, auth.JoinRequest{Token: tok.Token, Name: "web1", Hostname: "web1",
		PublicKey: string(ssh.MarshalAuthorizedKey(key.PublicKey()))})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(joined.SSHCert))
	if err != nil {
		t.Fatal(err)
	}
	nodeSigner, err := ssh.NewCertSigner(pub.(*ssh.Certificate), key)
	if err != nil {
		t.Fatal(err)
	}
	tun, _, err := a.dial(tunnelUser, nodeSigner)
	if err != nil {
		t.Fatal(err)
	}
	beat := func(env string) {
		p, _ := json.Marshal(heartbeat{Labels: map[string]string{"env": env}})
		if ok, _, err := tun.SendRequest(requestHeartbeat, true, p); err != nil || !ok {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	atB := func() map[string]string {
		out := map[string]string{}
		for _, n := range b.s.Inventory().Nodes() {
			out[n.Name] = n.Labels["env"]
		}
		return out
	}
	beat("dev")
	testkit.WaitFor(t, "B to list web1 behind A", func() bool { return atB()["web1"] == "dev" })
	if pr, _, ok := b.s.peers.owner(joined.NodeID); !ok || pr.ID != "proxy-a" {
		t.Fatalf("owner of web1 seen from B: %+v %v", pr, ok)
	}
	if _, _, ok := a.s.peers.owner(joined.NodeID); ok {
		t.Fatal("A routes its own node to a peer")
	}
	beat("prod")
	testkit.WaitFor(t, "B to see web1's new labels", func() bool { return atB()["web1"] == "prod" })
	// A key A published that vanished (a peer reaped it while A looked
	// dead) is written again.
	if err := sb.Delete(ctx, tunnelKey(joined.NodeID, "proxy-a")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "A to write web1's key again", func() bool {
		_, err := sb.Get(ctx, tunnelKey(joined.NodeID, "proxy-a"))
		return err == nil
	})
	testkit.WaitFor(t, "B to list web1 again", func() bool { return atB()["web1"] == "prod" })
	tun.Close()
	testkit.WaitFor(t, "web1 to leave B's inventory", func() bool { _, ok := atB()["web1"]; return !ok })

	// A proxy that died: its record expires, its tunnel key is reaped.
	v, _ := json.Marshal(proxyRecord{ID: "proxy-z", Addr: "127.0.0.1:2"})
	if _, err := sb.Put(ctx, storage.Item{Key: peerProxiesPrefix + "proxy-z", Value: v, Expires: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	v, _ = json.Marshal(tunnelRecord{Proxy: "proxy-z", Node: auth.Node{ID: "node-z", Name: "zed"}})
	if _, err := sb.Put(ctx, storage.Item{Key: tunnelKey("node-z", "proxy-z"), Value: v}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "B to list zed behind proxy-z", func() bool { _, ok := atB()["zed"]; return ok })
	testkit.WaitFor(t, "zed to leave B's inventory when proxy-z's record expires", func() bool { _, ok := atB()["zed"]; return !ok })
	testkit.WaitFor(t, "proxy-z's tunnel key to be reaped", func() bool {
		_, err := sb.Get(ctx, tunnelKey("node-z", "proxy-z"))
		return errors.Is(err, storage.ErrNotFound)
	})
	// B's own record is there; A's goes when A closes.
	if _, err := sb.Get(ctx, peerProxiesPrefix+"proxy-a"); err != nil {
		t.Fatalf("A's record: %v", err)
	}
	a.s.Close()
	if _, err := sb.Get(ctx, peerProxiesPrefix+"proxy-a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("A's record after Close: %v", err)
	}
}

// TestPeerOwnersSkipUnreachable: a peer a dial could not reach since its
// last heartbeat comes after the other peers holding the same node's
// tunnel (it may have just died, its record not yet expired), and is
// first again once it renews its record.
func TestPeerOwnersSkipUnreachable(t *testing.T) {
	p := &peering{cfg: PeerConfig{ID: "proxy-b", TTL: 10 * time.Second}, proxies: map[string]proxyRecord{},
		tunnels: map[string]map[string]tunnelRecord{}}
	now := time.Now()
	p.proxies["proxy-a"] = proxyRecord{ID: "proxy-a", Addr: "192.0.2.1:1", expires: now.Add(9 * time.Second)}
	p.proxies["proxy-c"] = proxyRecord{ID: "proxy-c", Addr: "192.0.2.3:1", expires: now.Add(9 * time.Second)}
	p.tunnels["n1"] = map[string]tunnelRecord{
		"proxy-a": {Proxy: "proxy-a", rev: 7}, // the newest
		"proxy-c": {Proxy: "proxy-c", rev: 3},
		"proxy-b": {Proxy: "proxy-b", rev: 9}, // this proxy's own: never a peer route
	}
	order := func() []string {
		var out []string
		for _, o := range p.owners("n1") {
			out = append(out, o.proxy.ID)
		}
		return out
	}
	if got := order(); !slices.Equal(got, []string{"proxy-a", "proxy-c"}) {
		t.Fatalf("owners: %v", got)
	}
	p.markUnreachable("proxy-a")
	if got := order(); !slices.Equal(got, []string{"proxy-c", "proxy-a"}) {
		t.Fatalf("owners after proxy-a was unreachable: %v", got)
	}
	if pr, _, ok := p.owner("n1"); !ok || pr.ID != "proxy-c" {
		t.Fatalf("owner after proxy-a was unreachable: %+v", pr)
	}
	// proxy-a heartbeats again: it is alive after all.
	p.proxies["proxy-a"] = proxyRecord{ID: "proxy-a", Addr: "192.0.2.1:1", expires: time.Now().Add(10*time.Second + time.Millisecond)}
	if got := order(); !slices.Equal(got, []string{"proxy-a", "proxy-c"}) {
		t.Fatalf("owners after proxy-a renewed its record: %v", got)
	}
}

// The frames of a join relayed between peers are bounded: a frame that
// claims more than maxPeerJoinFrame fails before anything is allocated.
func TestPeerJoinFrames(t *testing.T) {
	var b bytes.Buffer
	if err := writePeerJoinFrame(&b, peerJoinOutput, []byte("out")); err != nil {
		t.Fatal(err)
	}
	if err := writePeerJoinFrame(&b, peerJoinEnd, nil); err != nil {
		t.Fatal(err)
	}
	typ, p, err := readPeerJoinFrame(&b)
	if err != nil || typ != peerJoinOutput || string(p) != "out" {
		t.Fatalf("frame: %c %q %v", typ, p, err)
	}
	if typ, p, err = readPeerJoinFrame(&b); err != nil || typ != peerJoinEnd || len(p) != 0 {
		t.Fatalf("frame: %c %q %v", typ, p, err)
	}
	if err := writePeerJoinFrame(&b, peerJoinOutput, make([]byte, maxPeerJoinFrame+1)); err == nil {
		t.Fatal("an oversized frame was written")
	}
	big := append([]byte{peerJoinOutput}, binary.BigEndian.AppendUint32(nil, maxPeerJoinFrame+1)...)
	if _, _, err := readPeerJoinFrame(bytes.NewReader(big)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("an oversized frame: %v", err)
	}
	if _, _, err := readPeerJoinFrame(bytes.NewReader([]byte{peerJoinOutput, 0, 0, 0, 9, 'x'})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a truncated frame: %v", err)
	}
}

// TestPeerKubeOwnersSkipUnreachable: as for node tunnels, a peer a kube
// dial could not reach since its last heartbeat comes after the other
// peers through which the same cluster is connected, and is first again
// once it renews its record; a dead peer and this proxy are never routes.
func TestPeerKubeOwnersSkipUnreachable(t *testing.T) {
	p := &peering{cfg: PeerConfig{ID: "proxy-b", TTL: 10 * time.Second}, proxies: map[string]proxyRecord{},
		kube: map[string]map[string]kubeRecord{}}
	now := time.Now()
	p.proxies["proxy-a"] = proxyRecord{ID: "proxy-a", Addr: "192.0.2.1:1", expires: now.Add(9 * time.Second)}
	p.proxies["proxy-c"] = proxyRecord{ID: "proxy-c", Addr: "192.0.2.3:1", expires: now.Add(9 * time.Second)}
	p.proxies["proxy-d"] = proxyRecord{ID: "proxy-d", Addr: "192.0.2.4:1", expires: now.Add(-time.Second)} // dead
	k1 := func(agent string) []auth.KubeCluster {
		return []auth.KubeCluster{{Name: "other"}, {Name: "k1", AgentID: agent, Labels: map[string]string{"env": "dev"}}}
	}
	p.kube["agent-1"] = map[string]kubeRecord{
		"proxy-a": {Proxy: "proxy-a", Agent: "agent-1", Clusters: k1("agent-1"), rev: 7}, // the newest
		"proxy-c": {Proxy: "proxy-c", Agent: "agent-1", Clusters: k1("agent-1"), rev: 3},
		"proxy-b": {Proxy: "proxy-b", Agent: "agent-1", Clusters: k1("agent-1"), rev: 9}, // this proxy's own
		"proxy-d": {Proxy: "proxy-d", Agent: "agent-1", Clusters: k1("agent-1"), rev: 11},
	}
	order := func() []string {
		var out []string
		for _, o := range p.kubeOwners("k1") {
			if o.cluster.AgentID != "agent-1" || o.cluster.Labels["env"] != "dev" {
				t.Fatalf("cluster through %s: %+v", o.proxy.ID, o.cluster)
			}
			out = append(out, o.proxy.ID)
		}
		return out
	}
	if got := order(); !slices.Equal(got, []string{"proxy-a", "proxy-c"}) {
		t.Fatalf("kube owners: %v", got)
	}
	p.markUnreachable("proxy-a")
	if got := order(); !slices.Equal(got, []string{"proxy-c", "proxy-a"}) {
		t.Fatalf("kube owners after proxy-a was unreachable: %v", got)
	}
	if pr, c, ok := p.kubeOwner("k1"); !ok || pr.ID != "proxy-c" || c.Name != "k1" {
		t.Fatalf("kube owner after proxy-a was unreachable: %+v %+v", pr, c)
	}
	p.proxies["proxy-a"] = proxyRecord{ID: "proxy-a", Addr: "192.0.2.1:1", expires: time.Now().Add(10*time.Second + time.Millisecond)}
	if got := order(); !slices.Equal(got, []string{"proxy-a", "proxy-c"}) {
		t.Fatalf("kube owners after proxy-a renewed its record: %v", got)
	}
	if got := p.kubeOwners("missing"); len(got) != 0 {
		t.Fatalf("owners of an unknown cluster: %v", got)
	}
}
