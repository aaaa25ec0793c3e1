package clustertest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/tunnel"
)

// SimNode is a simulated node: a real joined identity (host certificate)
// and a real reverse tunnel, but no SSH server behind it. Used to put many
// nodes on one proxy.
type SimNode struct {
	Name    string
	ID      string
	signer  ssh.Signer
	hostCAs []ssh.PublicKey
	labels  map[string]string
	proxy   string
	// key is the node's private key; tlsCert and tlsCA its API identity
	// (PEM), as the join returned them.
	key            ed25519.PrivateKey
	tlsCert, tlsCA string
}

// SetProxy points the node's tunnel and API client at another proxy
// address (call before Run).
func (s *SimNode) SetProxy(addr string) { s.proxy = addr }

// APIClient is an API client with the node's identity, through its proxy:
// what a node agent uses for its watch of locks and roles.
func (s *SimNode) APIClient() (*api.Client, error) {
	id := idfile.File{TLSCert: s.tlsCert, TLSCA: s.tlsCA}
	block, _ := pem.Decode([]byte(s.tlsCert))
	if block == nil {
		return nil, fmt.Errorf("simulated node %s: no TLS certificate", s.Name)
	}
	pool, err := id.RootCAs()
	if err != nil {
		return nil, err
	}
	return api.NewClient(api.ClientConfig{Addr: s.proxy, RootCAs: pool,
		Certificate: &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: s.key}})
}

// SimulateNodes joins n simulated nodes through the API with one reusable
// token.
func SimulateNodes(t testing.TB, c *Cluster, n int, labels func(i int) map[string]string) []*SimNode {
	t.Helper()
	ctx := context.Background()
	tok, err := c.Admin.CreateToken(ctx, auth.CreateTokenRequest{Type: "node", TTL: time.Hour, Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*SimNode, 0, n)
	for i := 0; i < n; i++ {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("sim-%05d", i)
		resp, err := c.Admin.JoinNode(ctx, auth.JoinRequest{Token: tok.Token, Name: name, Hostname: name,
			PublicKey: string(ssh.MarshalAuthorizedKey(s.PublicKey()))})
		if err != nil {
			t.Fatalf("join %s: %v", name, err)
		}
		id := idfile.File{PrivateKey: "", SSHCert: resp.SSHCert}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(id.SSHCert))
		if err != nil {
			t.Fatal(err)
		}
		cs, err := ssh.NewCertSigner(pub.(*ssh.Certificate), s)
		if err != nil {
			t.Fatal(err)
		}
		cas, err := idfile.ParseAuthorizedKeys(resp.HostCAs)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &SimNode{Name: name, ID: resp.NodeID, signer: cs, hostCAs: cas, labels: labels(i), proxy: c.ProxyAddr(),
			key: priv, tlsCert: resp.TLSCert, tlsCA: resp.TLSCA})
	}
	return out
}

// Run keeps the simulated node's tunnel up until ctx ends.
func (s *SimNode) Run(ctx context.Context) {
	tunnel.DialAndServe(ctx, tunnel.Config{
		Addr:              s.proxy,
		Signer:            s.signer,
		HostCAs:           func() []ssh.PublicKey { return s.hostCAs },
		Heartbeat:         func() tunnel.Heartbeat { return tunnel.Heartbeat{Labels: s.labels, Version: "sim"} },
		HeartbeatInterval: 30 * time.Second,
		Handle:            func(_ context.Context, c net.Conn) { c.Close() },
		Logger:            slog.New(slog.DiscardHandler),
	})
}

// SimNodeData is a simulated node's identity in a form another process
// can load (NewSimNode), to run many tunnels away from the proxies'
// process.
type SimNodeData struct {
	Name    string            `json:"name"`
	ID      string            `json:"id"`
	Proxy   string            `json:"proxy"`
	Key     []byte            `json:"key"` // Ed25519 seed
	SSHCert string            `json:"ssh_cert"`
	HostCAs []string          `json:"host_cas"`
	Labels  map[string]string `json:"labels,omitempty"`
	TLSCert string            `json:"tls_cert"`
	TLSCA   string            `json:"tls_ca"`
}

// Data returns the node's identity.
func (s *SimNode) Data() SimNodeData {
	d := SimNodeData{Name: s.Name, ID: s.ID, Proxy: s.proxy, Key: s.key.Seed(), Labels: s.labels, TLSCert: s.tlsCert, TLSCA: s.tlsCA,
		SSHCert: string(ssh.MarshalAuthorizedKey(s.signer.PublicKey()))}
	for _, k := range s.hostCAs {
		d.HostCAs = append(d.HostCAs, string(ssh.MarshalAuthorizedKey(k)))
	}
	return d
}

// NewSimNode loads a simulated node from its identity.
func NewSimNode(d SimNodeData) (*SimNode, error) {
	if len(d.Key) != ed25519.SeedSize {
		return nil, fmt.Errorf("simulated node %s: bad key", d.Name)
	}
	key := ed25519.NewKeyFromSeed(d.Key)
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(d.SSHCert))
	if err != nil {
		return nil, err
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("simulated node %s: host certificate is a plain key", d.Name)
	}
	cs, err := ssh.NewCertSigner(cert, s)
	if err != nil {
		return nil, err
	}
	cas, err := idfile.ParseAuthorizedKeys(d.HostCAs)
	if err != nil {
		return nil, err
	}
	return &SimNode{Name: d.Name, ID: d.ID, signer: cs, hostCAs: cas, labels: d.Labels, proxy: d.Proxy,
		key: key, tlsCert: d.TLSCert, tlsCA: d.TLSCA}, nil
}
