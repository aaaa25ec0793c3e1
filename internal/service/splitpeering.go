package service

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/proxy"
	"github.com/warden-sh/warden/internal/storage"
)

// Proxy peering of a proxy running apart (docs/postgres.md "Proxy
// peering"): the same peering as the proxies in auth's process
// (internal/proxy/peers.go), its keys kept through auth's API (auth checks
// that the proxy writes its own keys only, its verified certificate being
// who it is) and its peering certificate issued by auth for its
// registration ID, which is its peer ID.

// splitPeering opens the peer listener and returns the peering
// configuration (nil when proxy peer_listen is not set).
func (s *splitProxy) peering(ctx context.Context) (*proxy.PeerConfig, error) {
	p := s.p
	if p.cfg.Proxy.PeerListen == "" {
		return nil, nil
	}
	addr, err := p.listenPeer()
	if err != nil {
		return nil, err
	}
	id := s.id.Load()
	pool, err := id.RootCAs()
	if err != nil {
		return nil, err
	}
	certs := &splitPeerCerts{s: s, id: id.NodeID}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := certs.renew(cctx); err != nil {
		return nil, err
	}
	return &proxy.PeerConfig{ID: id.NodeID, Addr: addr, Store: splitPeerStore{s},
		Certificate: certs.get, Roots: func() *x509.CertPool { return pool }}, nil
}

// splitPeerStore keeps the peering keys through auth.
type splitPeerStore struct{ s *splitProxy }

func (st splitPeerStore) Put(ctx context.Context, it storage.Item) (storage.Item, error) {
	var out storage.Item
	err := st.s.call(ctx, func(c *api.Client) error {
		var err error
		out, err = c.PeerPut(ctx, it)
		return err
	})
	return out, err
}

func (st splitPeerStore) Delete(ctx context.Context, key string) error {
	return st.s.call(ctx, func(c *api.Client) error { return c.PeerDelete(ctx, key) })
}

func (st splitPeerStore) List(ctx context.Context, prefix string, _ int) ([]storage.Item, error) {
	var out []storage.Item
	err := st.s.call(ctx, func(c *api.Client) error {
		var err error
		out, err = c.PeerList(ctx)
		return err
	})
	// Auth lists the peering keys; the caller's prefix narrows.
	kept := out[:0]
	for _, it := range out {
		if strings.HasPrefix(it.Key, prefix) {
			kept = append(kept, it)
		}
	}
	return kept, err
}

func (st splitPeerStore) Watch(ctx context.Context, prefix string, more ...string) (<-chan storage.Event, error) {
	if len(more) != 0 {
		return nil, errors.New("peering watch: one prefix")
	}
	var in <-chan storage.Event
	err := st.s.call(ctx, func(c *api.Client) error {
		var err error
		in, err = c.PeerWatch(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(chan storage.Event, 64)
	go func() {
		defer close(out)
		for ev := range in {
			if !strings.HasPrefix(ev.Item.Key, prefix) {
				continue
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// splitPeerCerts is the proxy's peering certificate, issued by auth for a
// key of its own and renewed at half its life.
type splitPeerCerts struct {
	s       *splitProxy
	id      string
	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

func (c *splitPeerCerts) get() (*tls.Certificate, error) {
	c.mu.Lock()
	cur, due := c.cert, c.cert == nil || !time.Now().Before(c.renewAt)
	c.mu.Unlock()
	if !due {
		return cur, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cert, err := c.renew(ctx)
	if err != nil {
		if cur != nil && time.Now().Before(cur.Leaf.NotAfter) {
			return cur, nil // renew at the next handshake
		}
		return nil, err
	}
	return cert, nil
}

func (c *splitPeerCerts) renew(ctx context.Context) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && time.Now().Before(c.renewAt) {
		return c.cert, nil // renewed meanwhile
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub, err := ssh.NewPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	var der []byte
	err = c.s.call(ctx, func(cl *api.Client) error {
		var err error
		der, err = cl.PeerCert(ctx, string(ssh.MarshalAuthorizedKey(pub)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("proxy peering certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errors.New("proxy peering certificate: issued certificate does not parse")
	}
	// What auth issued must be this proxy's peering certificate for this key.
	got, err := ca.VerifyProxyPeer([]*x509.Certificate{leaf}, mustPool(c.s), x509.ExtKeyUsageClientAuth, time.Now())
	if err != nil || got != c.id {
		return nil, fmt.Errorf("proxy peering certificate: auth issued one for %q: %v", got, err)
	}
	if pk, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pk.Equal(&key.PublicKey) {
		return nil, errors.New("proxy peering certificate: issued for another key")
	}
	c.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	c.renewAt = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	return c.cert, nil
}

func mustPool(s *splitProxy) *x509.CertPool {
	pool, err := s.id.Load().RootCAs()
	if err != nil {
		return x509.NewCertPool() // verifies nothing: fails closed
	}
	return pool
}
