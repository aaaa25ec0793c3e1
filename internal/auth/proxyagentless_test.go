package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// TestProxyAgentlessThroughAuth: what a proxy running apart gets from
// auth for agentless servers, and no more. The sshd certificate is for
// the login auth decided, with the options auth decided, for a server
// registered under that name and id; a lock is checked at auth. The host
// certificate names exactly a registered agentless server. The proxy
// speaks as an agentless server or a kube agent for their events, never
// as a node with an agent.
func TestProxyAgentlessThroughAuth(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, err := f.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: wire.TokenTypeProxy, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pj, err := f.a.JoinProxy(ctx, auth.JoinRequest{Token: tok.Token, Name: "px", Hostname: "px", PublicKey: pubKey(t), Principals: []string{"px.example"}})
	if err != nil {
		t.Fatal(err)
	}
	proxy := auth.Caller{Kind: auth.KindProxy, User: "proxy", NodeID: pj.ProxyID}
	var reg auth.AgentlessNode
	reg.Metadata.Name, reg.Spec.Addr = "sshd1", "192.0.2.7:22"
	reg.Spec.Labels = map[string]string{"env": "dev"}
	if err := f.a.UpsertAgentlessNode(ctx, auth.AdminCaller(), &reg); err != nil {
		t.Fatal(err)
	}
	nodes, err := f.a.ProxyListAgentless(ctx, proxy)
	if err != nil || len(nodes) != 1 || nodes[0].Name != "sshd1" || !nodes[0].Agentless || nodes[0].Addr != "192.0.2.7:22" {
		t.Fatalf("agentless servers for the proxy: %+v %v", nodes, err)
	}
	server := nodes[0]
	f.signup("alice", []string{"access"}, []string{"ubuntu"})
	alice := f.userCaller("alice", []string{"access"})
	key := func() ssh.PublicKey {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := ssh.NewPublicKey(pub)
		return k
	}

	d, err := f.a.ProxyAuthorizeAgentless(ctx, proxy, alice, server, "ubuntu", "192.0.2.50:4000")
	if err != nil || d.Caller.User != "alice" {
		t.Fatalf("decision: %+v %v", d, err)
	}
	pub := key()
	cert, err := f.a.ProxyIssueAgentlessCert(ctx, proxy, alice, server, "ubuntu", "192.0.2.50:4000", pub, "192.0.2.9")
	if err != nil {
		t.Fatal(err)
	}
	if cert.CertType != ssh.UserCert || cert.KeyId != "alice" || !slices.Contains(cert.ValidPrincipals, "ubuntu") ||
		slices.Contains(cert.ValidPrincipals, "root") || string(cert.Key.Marshal()) != string(pub.Marshal()) {
		t.Fatalf("sshd certificate: %+v", cert)
	}
	if ttl := time.Duration(cert.ValidBefore-cert.ValidAfter) * time.Second; ttl > auth.SessionCertTTL+2*time.Minute {
		t.Fatalf("sshd certificate valid %s", ttl)
	}
	if cert.CriticalOptions["source-address"] != "192.0.2.9" {
		t.Fatalf("source address: %v", cert.CriticalOptions)
	}
	// A login the roles do not allow; a server under another id; a
	// certificate identity that is not a user's.
	if _, err := f.a.ProxyIssueAgentlessCert(ctx, proxy, alice, server, "root", "", key(), ""); err == nil {
		t.Fatal("a certificate for a login the roles do not allow")
	}
	other := server
	other.ID = "00000000-0000-0000-0000-000000000001"
	if _, err := f.a.ProxyIssueAgentlessCert(ctx, proxy, alice, other, "ubuntu", "", key(), ""); err == nil {
		t.Fatal("a certificate for a server under an id it is not registered with")
	}
	n1 := f.joinNode("n1")
	if _, err := f.a.ProxyIssueAgentlessCert(ctx, proxy, n1, server, "ubuntu", "", key(), ""); !errors.Is(err, auth.ErrBadRequest) {
		t.Fatalf("a certificate for a node's identity: %v", err)
	}

	// The host certificate: exactly the registered name and id.
	hpub := key()
	hc, err := f.a.ProxyAgentlessHostCert(ctx, proxy, "sshd1", server.ID, hpub)
	if err != nil {
		t.Fatal(err)
	}
	if hc.CertType != ssh.HostCert || !slices.Equal(hc.ValidPrincipals, []string{"sshd1", server.ID}) {
		t.Fatalf("host certificate: %+v", hc)
	}
	if _, err := f.a.ProxyAgentlessHostCert(ctx, proxy, "sshd1", other.ID, key()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a host certificate under another id: %v", err)
	}
	if _, err := f.a.ProxyAgentlessHostCert(ctx, proxy, "n1", n1.NodeID, key()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a host certificate in a node's name: %v", err)
	}
	if _, err := f.a.ProxyAgentlessHostCert(ctx, proxy, "px.example", pj.ProxyID, key()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a host certificate for another name of the proxy: %v", err)
	}

	// The server's identity for its events; never a node with an agent.
	nc, err := f.a.ProxyAgentlessCaller(ctx, proxy, server.ID)
	if err != nil || nc.Kind != auth.KindNode || nc.NodeID != server.ID {
		t.Fatalf("the server's caller: %+v %v", nc, err)
	}
	if _, err := f.a.ProxyAgentlessCaller(ctx, proxy, n1.NodeID); err == nil {
		t.Fatal("the proxy spoke as a node with an agent")
	}
	// A kube agent: the proxy records the exec sessions it relays to it.
	ktok, err := f.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: wire.TokenTypeKube, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	kj, err := f.a.JoinNode(ctx, auth.JoinRequest{Token: ktok.Token, Kind: wire.TokenTypeKube, Name: "kagent", Hostname: "kagent", PublicKey: pubKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	if kc, err := f.a.ProxyAgentlessCaller(ctx, proxy, kj.NodeID); err != nil || kc.Kind != auth.KindNode || kc.NodeID != kj.NodeID {
		t.Fatalf("the kube agent's caller: %+v %v", kc, err)
	}
	if _, err := f.a.ProxyAgentlessCaller(ctx, n1, kj.NodeID); err == nil {
		t.Fatal("a node spoke as a kube agent")
	}
	if _, err := f.a.ProxyAgentlessCaller(ctx, proxy, "00000000-0000-0000-0000-00000000beef"); err == nil {
		t.Fatal("the proxy spoke for an unregistered id")
	}

	// A lock on the user, checked at auth: no certificate.
	if _, err := f.a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "alice"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.ProxyIssueAgentlessCert(ctx, proxy, alice, server, "ubuntu", "", key(), ""); err == nil {
		t.Fatal("a certificate for a locked user")
	}
	// The server removed: no more.
	if err := f.a.DeleteAgentlessNode(ctx, auth.AdminCaller(), "sshd1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.ProxyAgentlessCaller(ctx, proxy, server.ID); err == nil {
		t.Fatal("the proxy spoke for a removed server")
	}
	if _, err := f.a.ProxyAgentlessHostCert(ctx, proxy, "sshd1", server.ID, key()); err == nil {
		t.Fatal("a host certificate for a removed server")
	}
}
