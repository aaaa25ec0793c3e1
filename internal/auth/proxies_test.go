package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

// TestProxiesJoinAndPublishTheirNodes: a proxy joins with a proxy token
// only (and a proxy token joins no node); every auth instance lists the
// nodes proxies publish, only registered ones, until a proxy stops
// publishing; a proxy is neither a node for tunnels nor an offline node.
func TestProxiesJoinAndPublishTheirNodes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.a.SetInventory(f.a.StoredInventory())
	token := func(typ string) string {
		tok, err := f.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: typ, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}
	join := func(tok, name string) (*auth.ProxyJoinResponse, error) {
		return f.a.JoinProxy(ctx, auth.JoinRequest{Token: tok, Name: name, Hostname: name, PublicKey: pubKey(t),
			Principals: []string{name + ".example", "192.0.2.10"}})
	}
	if _, err := join(token(wire.TokenTypeNode), "px"); err == nil {
		t.Fatal("a node token joined a proxy")
	}
	if _, err := f.a.JoinNode(ctx, auth.JoinRequest{Token: token(wire.TokenTypeProxy), Name: "n", Hostname: "n", PublicKey: pubKey(t)}); err == nil {
		t.Fatal("a proxy token joined a node")
	}
	if _, err := f.a.JoinProxy(ctx, auth.JoinRequest{Token: token(wire.TokenTypeProxy), Name: "px", Hostname: "px", PublicKey: pubKey(t),
		Principals: []string{"bad name!"}}); err == nil {
		t.Fatal("a proxy joined for an invalid name")
	}
	pa, err := join(token(wire.TokenTypeProxy), "proxy-a")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := join(token(wire.TokenTypeProxy), "proxy-b")
	if err != nil {
		t.Fatal(err)
	}
	proxyA := auth.Caller{Kind: auth.KindProxy, User: "proxy", NodeID: pa.ProxyID}
	proxyB := auth.Caller{Kind: auth.KindProxy, User: "proxy", NodeID: pb.ProxyID}
	if _, err := f.a.ProxyNodeRegistration(ctx, proxyA, pb.ProxyID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a proxy's registration served as a node's: %v", err)
	}

	n1, n2 := f.joinNode("n1"), f.joinNode("n2")
	if err := f.a.PublishProxyInventory(ctx, proxyA, auth.ProxyInventory{Nodes: []auth.Node{{ID: n1.NodeID, Name: "n1", Hostname: "n1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := f.a.PublishProxyInventory(ctx, proxyB, auth.ProxyInventory{Nodes: []auth.Node{{ID: n2.NodeID, Name: "n2", Hostname: "n2"}}}); err != nil {
		t.Fatal(err)
	}
	if err := f.a.PublishProxyInventory(ctx, proxyB, auth.ProxyInventory{Nodes: []auth.Node{{ID: "11111111-1111-1111-1111-111111111111", Name: "ghost", Hostname: "ghost"}}}); err == nil {
		t.Fatal("a proxy published a node that never joined")
	}
	names := func() []string {
		nodes, err := f.a.ListNodes(ctx, auth.AdminCaller(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range nodes {
			out = append(out, n.Name)
		}
		return out
	}
	// Nor a node as a kube agent.
	if err := f.a.PublishProxyInventory(ctx, proxyB, auth.ProxyInventory{KubeClusters: []auth.KubeCluster{{Name: "k1", AgentID: n2.NodeID}}}); err == nil {
		t.Fatal("a proxy published a node as a kube agent")
	}
	if got := names(); len(got) != 2 || got[0] != "n1" || got[1] != "n2" {
		t.Fatalf("nodes of both proxies: %v", got)
	}
	// Proxy B stops publishing: its nodes drop out when the TTL ends.
	f.clock.Advance(auth.ProxyInventoryTTL / 2)
	if err := f.a.PublishProxyInventory(ctx, proxyA, auth.ProxyInventory{Nodes: []auth.Node{{ID: n1.NodeID, Name: "n1", Hostname: "n1"}}}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(auth.ProxyInventoryTTL/2 + time.Second)
	testkit.WaitFor(t, "proxy B's nodes to drop out", func() bool {
		got := names()
		return len(got) == 1 && got[0] == "n1"
	})

	// A lock on a proxy (by id or name) revokes its identity at once.
	if _, err := f.a.CurrentCaller(ctx, proxyA, "test", ""); err != nil {
		t.Fatalf("proxy A before the lock: %v", err)
	}
	for _, target := range []string{pa.ProxyID, "proxy-b"} {
		if _, err := f.a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{Node: target}, Message: "revoked"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []auth.Caller{proxyA, proxyB} {
		if _, err := f.a.CurrentCaller(ctx, p, "test", ""); !errors.Is(err, auth.ErrAccessDenied) {
			t.Fatalf("a locked proxy: %v", err)
		}
	}
	if _, err := f.a.CurrentCaller(ctx, auth.Caller{Kind: auth.KindProxy, User: "proxy", NodeID: "no-such-proxy"}, "test", ""); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("an unregistered proxy: %v", err)
	}
	if _, err := f.a.CurrentCaller(ctx, auth.ProxyCaller(), "test", ""); err != nil {
		t.Fatalf("the proxy in auth's process: %v", err)
	}

	h, err := f.a.ClusterHealth(ctx, auth.AdminCaller())
	if err != nil {
		t.Fatal(err)
	}
	for _, reg := range h.Offline {
		if reg.Kind == auth.RegistrationProxy {
			t.Fatalf("a proxy listed as an offline node: %+v", reg)
		}
	}
}
