package service

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/proxy"
)

// peerCertTTL is the life of a proxy's peering certificate; it is renewed
// at half of it.
const peerCertTTL = 24 * time.Hour

// listenPeer opens the peer listener (proxy peer_listen) and returns the
// address peers dial (proxy peer_addr, its port the listener's when 0).
func (p *Process) listenPeer() (string, error) {
	ln, err := net.Listen("tcp", p.cfg.Proxy.PeerListen)
	if err != nil {
		return "", fmt.Errorf("proxy peer_listen: %w", err)
	}
	p.peerLn = ln
	addr := p.cfg.Proxy.PeerAddr
	if host, port, _ := net.SplitHostPort(addr); port == "0" {
		_, picked, _ := net.SplitHostPort(ln.Addr().String())
		addr = net.JoinHostPort(host, picked)
	}
	return addr, nil
}

// peering opens the peer listener and returns the proxy's peering
// configuration (nil when proxy peer_listen is not set).
func (p *Process) peering() (*proxy.PeerConfig, error) {
	if p.cfg.Proxy.PeerListen == "" {
		return nil, nil
	}
	addr, err := p.listenPeer()
	if err != nil {
		return nil, err
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	id := "proxy-" + hex.EncodeToString(b[:])
	certs := &peerCerts{a: p.auth.Authority(), id: id}
	if _, err := certs.get(); err != nil {
		return nil, err
	}
	return &proxy.PeerConfig{ID: id, Addr: addr, Store: p.backend, Certificate: certs.get,
		Roots: p.auth.Authority().CertPool}, nil
}

// PeerAddr is the address of the proxy's peer listener ("" when peering
// is off).
func (p *Process) PeerAddr() string {
	if p.peerLn == nil {
		return ""
	}
	return p.peerLn.Addr().String()
}

// peerCerts issues the proxy's peering certificate and renews it at half
// its life.
type peerCerts struct {
	a       *ca.Authority
	id      string
	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

func (c *peerCerts) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && time.Now().Before(c.renewAt) {
		return c.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := c.a.IssueProxyPeer(&key.PublicKey, c.id, peerCertTTL)
	if err != nil {
		if c.cert != nil && time.Now().Before(c.cert.Leaf.NotAfter) {
			return c.cert, nil // renew later
		}
		return nil, fmt.Errorf("proxy peering certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errors.New("proxy peering certificate: issued certificate does not parse")
	}
	c.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	c.renewAt = time.Now().Add(peerCertTTL / 2)
	return c.cert, nil
}
