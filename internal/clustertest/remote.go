package clustertest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
)

// JoinSimNodes joins n simulated nodes through any API client (joining
// needs only the reusable token it creates) to the proxy at proxyAddr, with
// workers parallel joins. Unlike SimulateNodes it needs no in-process
// cluster, so the proxy can be a separate `warden start` process.
func JoinSimNodes(t testing.TB, admin *api.Client, proxyAddr string, n, workers int, labels func(i int) map[string]string) []*SimNode {
	t.Helper()
	if workers < 1 {
		workers = 1
	}
	ctx := context.Background()
	tok, err := admin.CreateToken(ctx, auth.CreateTokenRequest{Type: "node", TTL: 2 * time.Hour, Reusable: true})
	if err != nil {
		t.Fatalf("create reusable node token: %v", err)
	}
	out := make([]*SimNode, n)
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s, err := joinSimNode(ctx, admin, tok.Token, proxyAddr, i, labels)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				out[i] = s
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("join simulated nodes: %v", firstErr)
	}
	return out
}

func joinSimNode(ctx context.Context, admin *api.Client, token, proxyAddr string, i int, labels func(int) map[string]string) (*SimNode, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("sim-%05d", i)
	resp, err := admin.JoinNode(ctx, auth.JoinRequest{Token: token, Name: name, Hostname: name,
		PublicKey: string(ssh.MarshalAuthorizedKey(s.PublicKey()))})
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", name, err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.SSHCert))
	if err != nil {
		return nil, fmt.Errorf("join %s: host certificate: %w", name, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("join %s: host certificate is a plain key", name)
	}
	cs, err := ssh.NewCertSigner(cert, s)
	if err != nil {
		return nil, err
	}
	cas, err := idfile.ParseAuthorizedKeys(resp.HostCAs)
	if err != nil {
		return nil, err
	}
	var l map[string]string
	if labels != nil {
		l = labels(i)
	}
	return &SimNode{Name: name, ID: resp.NodeID, signer: cs, hostCAs: cas, labels: l, proxy: proxyAddr,
		key: priv, tlsCert: resp.TLSCert, tlsCA: resp.TLSCA}, nil
}
