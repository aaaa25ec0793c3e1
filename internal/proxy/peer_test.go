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
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage/sqlite"
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
	if _, err := e.a.CreateLock(context.Background(), auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "alice"}, Message: "peer-stop"}); err != nil {
		t.Fatal(err)
	}
	err = peerAttemptDial(t, e.peerAddr, cert, d)
	var refused errPeerRefused
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "peer-stop") {
		t.Fatalf("a locked user's forwarded dial: want the lock's refusal, got %v", err)
	}
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
		"node id with a slash": func(d *PeerDial) { d.NodeID = "../x" },
		"empty node id":        func(d *PeerDial) { d.NodeID = "" },
		"client address":       func(d *PeerDial) { d.ClientAddr = "example.com:22" },
		"username":             func(d *PeerDial) { d.Caller.User = "alice\n" },
		"role":                 func(d *PeerDial) { d.Caller.Roles = []string{"a b"} },
		"no issue time":        func(d *PeerDial) { d.Caller.Issued = time.Time{} },
		"expires before issue": func(d *PeerDial) { d.Caller.Expires = d.Caller.Issued.Add(-time.Second) },
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
