package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// TestProxyPeeringThroughAuth: a proxy running apart keeps its peering keys
// through auth, which holds it to its own: its record (naming itself, with
// a short TTL), the tunnels of registered nodes under its own ID; it may
// delete another proxy's tunnel key only once that proxy's record is gone;
// its peering certificate is issued for its registration ID, and what it
// writes reaches a watch.
func TestProxyPeeringThroughAuth(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	join := func(name string) auth.Caller {
		tok, err := f.a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: wire.TokenTypeProxy, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := f.a.JoinProxy(ctx, auth.JoinRequest{Token: tok.Token, Name: name, Hostname: name, PublicKey: pubKey(t),
			Principals: []string{name + ".example"}})
		if err != nil {
			t.Fatal(err)
		}
		return auth.Caller{Kind: auth.KindProxy, User: "proxy", NodeID: resp.ProxyID}
	}
	pa, pb := join("proxy-a"), join("proxy-b")
	n1 := f.joinNode("n1")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := f.a.ProxyPeerWatch(wctx, pa)
	if err != nil {
		t.Fatal(err)
	}
	record := func(id, addr string) []byte {
		b, _ := json.Marshal(map[string]string{"id": id, "addr": addr})
		return b
	}
	tunnel := func(proxyID, nodeID, name string) []byte {
		b, _ := json.Marshal(map[string]any{"proxy": proxyID, "node": auth.Node{ID: nodeID, Name: name, Hostname: name}})
		return b
	}
	soon := time.Now().Add(10 * time.Second)
	put := func(c auth.Caller, key string, v []byte, exp time.Time) error {
		_, err := f.a.ProxyPeerPut(ctx, c, storage.Item{Key: key, Value: v, Expires: exp})
		return err
	}
	// Its own record and tunnel.
	if err := put(pa, "/peering/proxies/"+pa.NodeID, record(pa.NodeID, "192.0.2.1:3082"), soon); err != nil {
		t.Fatal(err)
	}
	if err := put(pa, "/peering/tunnels/"+n1.NodeID+"/"+pa.NodeID, tunnel(pa.NodeID, n1.NodeID, "n1"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Item.Key != "/peering/proxies/"+pa.NodeID {
			t.Fatalf("first watched change: %s", ev.Item.Key)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch saw no change")
	}
	refused := []struct {
		what string
		key  string
		v    []byte
		exp  time.Time
	}{
		{"another proxy's record", "/peering/proxies/" + pb.NodeID, record(pb.NodeID, "192.0.2.2:3082"), soon},
		{"a record naming another proxy", "/peering/proxies/" + pa.NodeID, record(pb.NodeID, "192.0.2.1:3082"), soon},
		{"a record without a TTL", "/peering/proxies/" + pa.NodeID, record(pa.NodeID, "192.0.2.1:3082"), time.Time{}},
		{"a record living an hour", "/peering/proxies/" + pa.NodeID, record(pa.NodeID, "192.0.2.1:3082"), time.Now().Add(time.Hour)},
		{"a record without an address", "/peering/proxies/" + pa.NodeID, record(pa.NodeID, "nowhere"), soon},
		{"a record with unknown fields", "/peering/proxies/" + pa.NodeID, []byte(`{"id":"` + pa.NodeID + `","addr":"192.0.2.1:1","x":1}`), soon},
		{"another proxy's tunnel", "/peering/tunnels/" + n1.NodeID + "/" + pb.NodeID, tunnel(pb.NodeID, n1.NodeID, "n1"), time.Time{}},
		{"an unregistered node", "/peering/tunnels/11111111-1111-1111-1111-111111111111/" + pa.NodeID,
			tunnel(pa.NodeID, "11111111-1111-1111-1111-111111111111", "ghost"), time.Time{}},
		{"a node under another name", "/peering/tunnels/" + n1.NodeID + "/" + pa.NodeID, tunnel(pa.NodeID, n1.NodeID, "forged"), time.Time{}},
		{"a key outside peering", "/locks/x", []byte(`{}`), time.Time{}},
		{"clusters of a node that is no kube agent", "/peering/kube/" + n1.NodeID + "/" + pa.NodeID,
			[]byte(`{"proxy":"` + pa.NodeID + `","agent":"` + n1.NodeID + `","clusters":[{"name":"k1","agent_id":"` + n1.NodeID + `"}]}`), time.Time{}},
		{"another proxy's kube key", "/peering/kube/" + n1.NodeID + "/" + pb.NodeID,
			[]byte(`{"proxy":"` + pb.NodeID + `","agent":"` + n1.NodeID + `","clusters":[{"name":"k1","agent_id":"` + n1.NodeID + `"}]}`), time.Time{}},
		{"a record too large", "/peering/proxies/" + pa.NodeID, []byte(`"` + strings.Repeat("a", 20<<10) + `"`), soon},
	}
	for _, r := range refused {
		if err := put(pa, r.key, r.v, r.exp); err == nil {
			t.Errorf("proxy A wrote %s", r.what)
		}
	}
	// Proxy B may not delete A's keys while A's record lives.
	if err := f.a.ProxyPeerDelete(ctx, pb, "/peering/tunnels/"+n1.NodeID+"/"+pa.NodeID); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("proxy B deleted a live proxy's tunnel: %v", err)
	}
	if err := f.a.ProxyPeerDelete(ctx, pb, "/peering/proxies/"+pa.NodeID); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("proxy B deleted proxy A's record: %v", err)
	}
	items, err := f.a.ProxyPeerList(ctx, pb)
	if err != nil || len(items) != 2 {
		t.Fatalf("peering keys: %v %+v", err, items)
	}
	// Once A's record is gone, B cleans up its tunnel.
	if err := f.a.ProxyPeerDelete(ctx, pa, "/peering/proxies/"+pa.NodeID); err != nil {
		t.Fatal(err)
	}
	if err := f.a.ProxyPeerDelete(ctx, pb, "/peering/tunnels/"+n1.NodeID+"/"+pa.NodeID); err != nil {
		t.Fatalf("proxy B could not delete a dead proxy's tunnel: %v", err)
	}
	if items, _ := f.a.ProxyPeerList(ctx, pb); len(items) != 0 {
		t.Fatalf("peering keys left: %+v", items)
	}

	// The peering certificate names the proxy's registration ID.
	pub := pubKey(t)
	der, err := f.a.IssueProxyPeerCert(ctx, pa, pub)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.VerifyProxyPeer([]*x509.Certificate{leaf}, f.a.Authority().CertPool(), x509.ExtKeyUsageClientAuth, time.Now())
	if err != nil || id != pa.NodeID {
		t.Fatalf("peering certificate for %q: %v", id, err)
	}
	// A proxy's certificate with no registration behind it peers no more.
	ghost := auth.Caller{Kind: auth.KindProxy, User: "proxy"}
	if _, err := f.a.IssueProxyPeerCert(ctx, ghost, pub); err == nil {
		t.Fatal("a peering certificate for a proxy without an ID")
	}
}
