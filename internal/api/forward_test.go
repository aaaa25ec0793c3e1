package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// joinProxy joins a proxy through the open route and returns a client
// with its proxy identity, and the join's answer.
func (e *env) joinProxy(admin *Client) (*Client, *wire.ProxyJoinResponse) {
	e.t.Helper()
	tok := decodeAs[wire.TokenResult](e.t, e.call(admin, "POST", "/v1/tokens", auth.CreateTokenRequest{Type: wire.TokenTypeProxy}, http.StatusOK))
	priv, pub := newKey(e.t)
	resp := decodeAs[wire.ProxyJoinResponse](e.t, e.call(e.client(nil), "POST", "/v1/proxies/join",
		wire.JoinRequest{Token: tok.Token, Name: "proxy-a", Hostname: "proxy-a", PublicKey: pub,
			Principals: []string{"proxy-a.example", "10.1.2.3"}}, http.StatusOK))
	return e.certClient(priv, resp.Certs), &resp
}

// joinNode joins a node and returns a client with its identity.
func (e *env) joinNode(admin *Client, name string) (*Client, *wire.JoinResponse) {
	e.t.Helper()
	tok := decodeAs[wire.TokenResult](e.t, e.call(admin, "POST", "/v1/tokens", auth.CreateTokenRequest{Type: wire.TokenTypeNode}, http.StatusOK))
	priv, pub := newKey(e.t)
	resp := decodeAs[wire.JoinResponse](e.t, e.call(e.client(nil), "POST", "/v1/nodes/join",
		wire.JoinRequest{Token: tok.Token, Name: name, Hostname: name, PublicKey: pub}, http.StatusOK))
	return e.certClient(priv, resp.Certs), &resp
}

func certDER(t *testing.T, pemCert string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(pemCert))
	if b == nil {
		t.Fatalf("not a PEM certificate: %q", pemCert)
	}
	return b.Bytes
}

// TestForwardedIdentityOnlyFromAProxy: a proxy running apart from auth
// forwards the client certificate it verified, and auth then treats the
// call as that client's. Only a connection with a proxy identity may do
// so: a node or a user sending the same header (with a certificate they
// were shown, here the admin's) is refused, as is a client with none; a
// proxy cannot forward a certificate the cluster CA did not issue, nor a
// proxy identity. The calls only proxies make are refused to users and
// nodes.
func TestForwardedIdentityOnlyFromAProxy(t *testing.T) {
	e := newEnv(t)
	admin := e.admin()
	roles, err := policy.ParseRoles([]byte(testRoles))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles {
		e.call(admin, "PUT", "/v1/roles/"+r.Metadata.Name, r, http.StatusOK)
	}
	proxy, joined := e.joinProxy(admin)
	node, _ := e.joinNode(admin, "web1")
	user, _ := e.signup(admin, "alice", "dev")

	// The admin's certificate, as anyone who was shown it has it.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	adminDER, err := e.a.IssueAdminIdentity(priv.Public(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fwdAdmin := base64.StdEncoding.EncodeToString(adminDER)

	who := func(c *Client, want int, hdr ...string) WhoAmI {
		t.Helper()
		data := e.call(c, "GET", "/v1/whoami", nil, want, hdr...)
		if want != http.StatusOK {
			return WhoAmI{}
		}
		return decodeAs[WhoAmI](t, data)
	}
	// The proxy as itself, and speaking for the admin.
	if w := who(proxy, http.StatusOK); w.Kind != auth.KindProxy || w.NodeID != joined.ProxyID {
		t.Fatalf("the proxy's own identity: %+v", w)
	}
	if w := who(proxy, http.StatusOK, HeaderClientCert, fwdAdmin); w.Kind != auth.KindAdmin {
		t.Fatalf("the proxy forwarding the admin's certificate: %+v", w)
	}
	// A request the proxy forwards for a client without a certificate is
	// not the proxy's own.
	who(proxy, http.StatusUnauthorized, HeaderClientAddr, "192.0.2.1")
	e.call(proxy, "POST", "/v1/proxies/check-user", ProxyCheckUserRequest{User: auth.Caller{Kind: auth.KindUser, User: "alice"}},
		http.StatusUnauthorized, HeaderClientAddr, "192.0.2.1")
	e.call(proxy, "GET", "/v1/ping", nil, http.StatusOK, HeaderClientAddr, "192.0.2.1")
	// Nobody else may forward: not a node, not a user, not a client
	// without a certificate; and not the address either.
	for name, c := range map[string]*Client{"node": node, "user": user, "no certificate": e.client(nil)} {
		who(c, http.StatusUnauthorized, HeaderClientCert, fwdAdmin)
		who(c, http.StatusUnauthorized, HeaderClientAddr, "192.0.2.1")
		e.call(c, "GET", "/v1/ping", nil, http.StatusUnauthorized, HeaderClientAddr, "192.0.2.1")
		if name != "no certificate" {
			if w := who(c, http.StatusOK); w.Kind == auth.KindAdmin {
				t.Fatalf("%s: %+v", name, w)
			}
		}
	}
	// A proxy forwards only what the cluster CA issued, and never a proxy.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "admin", OrganizationalUnit: []string{"admin"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	self, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	who(proxy, http.StatusUnauthorized, HeaderClientCert, base64.StdEncoding.EncodeToString(self))
	who(proxy, http.StatusUnauthorized, HeaderClientCert, "not base64!")
	who(proxy, http.StatusUnauthorized, HeaderClientCert, base64.StdEncoding.EncodeToString(certDER(t, joined.TLSCert)))

	// A lock on the proxy revokes it: its own calls and those it forwards.
	lk := decodeAs[wire.CreateLockResult](t, e.call(admin, "POST", "/v1/locks", wire.CreateLockRequest{Target: lock.Target{Node: joined.ProxyID}}, http.StatusOK))
	who(proxy, http.StatusForbidden)
	who(proxy, http.StatusForbidden, HeaderClientCert, fwdAdmin)
	e.call(proxy, "GET", "/v1/ping", nil, http.StatusForbidden, HeaderClientAddr, "192.0.2.1")
	e.call(admin, "DELETE", "/v1/locks/"+lk.Lock.ID, nil, http.StatusOK)
	who(proxy, http.StatusOK, HeaderClientCert, fwdAdmin)

	// The calls of proxies are theirs only.
	check := ProxyCheckUserRequest{User: auth.Caller{Kind: auth.KindUser, User: "alice", Roles: []string{"dev"}, Issued: time.Now()}, Via: "test"}
	for _, c := range []*Client{node, user, admin} {
		e.call(c, "POST", "/v1/proxies/check-user", check, http.StatusForbidden)
		e.call(c, "GET", "/v1/proxies/noderegs/x", nil, http.StatusForbidden)
		e.call(c, "PUT", "/v1/proxies/inventory", wire.ProxyInventory{}, http.StatusForbidden)
		e.call(c, "POST", "/v1/proxies/authorize-kube", ProxyKubeRequest{User: check.User}, http.StatusForbidden)
		e.call(c, "GET", "/v1/proxies/peering/keys", nil, http.StatusForbidden)
		e.call(c, "GET", "/v1/proxies/peering/watch", nil, http.StatusForbidden)
		e.call(c, "PUT", "/v1/proxies/peering/keys", PeerItem{Key: "/peering/proxies/x"}, http.StatusForbidden)
		e.call(c, "DELETE", "/v1/proxies/peering/keys?key=/peering/proxies/x", nil, http.StatusForbidden)
		e.call(c, "POST", "/v1/proxies/peering/cert", PeerCertRequest{}, http.StatusForbidden)
	}
}

// exerciseProxyRoutes calls every route of proxies (TestEveryRouteReachesItsHandler).
func exerciseProxyRoutes(t *testing.T, e *env, admin *Client) {
	proxy, joined := e.joinProxy(admin)
	if joined.ProxyID == "" || joined.TLSServerCert == "" || joined.SSHCert == "" {
		t.Fatalf("proxy join: %+v", joined)
	}
	srv, err := x509.ParseCertificate(certDER(t, joined.TLSServerCert))
	if err != nil || srv.VerifyHostname("proxy-a.example") != nil || srv.VerifyHostname("10.1.2.3") != nil {
		t.Fatalf("proxy server certificate: %v %v", srv, err)
	}
	_, pub := newKey(t)
	renewed := decodeAs[wire.ProxyCerts](t, e.call(proxy, "POST", "/v1/proxies/renew", wire.ProxyRenewRequest{PublicKey: pub}, http.StatusOK))
	if renewed.TLSServerCert == "" || renewed.TLSCert == "" {
		t.Fatalf("renewed: %+v", renewed)
	}
	_, nodeJoin := e.joinNode(admin, "pub1")
	reg := decodeAs[auth.NodeRegistration](t, e.call(proxy, "GET", "/v1/proxies/noderegs/"+nodeJoin.NodeID, nil, http.StatusOK))
	if reg.Name != "pub1" {
		t.Fatalf("registration: %+v", reg)
	}
	e.call(proxy, "GET", "/v1/proxies/noderegs/"+joined.ProxyID, nil, http.StatusNotFound)
	e.call(proxy, "PUT", "/v1/proxies/inventory", wire.ProxyInventory{Nodes: []wire.Node{{ID: nodeJoin.NodeID, Name: "pub1", Hostname: "pub1"}}}, http.StatusOK)
	e.call(proxy, "PUT", "/v1/proxies/inventory", wire.ProxyInventory{Nodes: []wire.Node{{ID: nodeJoin.NodeID, Name: "forged", Hostname: "pub1"}}}, http.StatusBadRequest)
	e.call(proxy, "POST", "/v1/proxies/authorize-kube", ProxyKubeRequest{User: auth.Caller{Kind: auth.KindUser, User: "nobody", Issued: time.Now()},
		Cluster: auth.KubeCluster{Name: "k1"}}, http.StatusForbidden)
	e.call(proxy, "POST", "/v1/proxies/check-user", ProxyCheckUserRequest{User: auth.Caller{Kind: auth.KindUser, User: "nobody", Issued: time.Now()}},
		http.StatusForbidden)
	e.call(proxy, "POST", "/v1/proxies/spend-session-cert", ProxySpendRequest{Serial: 7, Expires: time.Now().Add(time.Hour), Max: 1}, http.StatusOK)
	e.call(proxy, "POST", "/v1/proxies/spend-session-cert", ProxySpendRequest{Serial: 7, Expires: time.Now().Add(time.Hour), Max: 1}, http.StatusForbidden)

	// Peering: the proxy's own keys, written, watched, listed and deleted
	// through auth; its peering certificate.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := proxy.PeerWatch(ctx)
	if err != nil {
		t.Fatalf("peering watch: %v", err)
	}
	rec := []byte(`{"id":"` + joined.ProxyID + `","addr":"10.1.2.3:3082"}`)
	if _, err := proxy.PeerPut(ctx, storage.Item{Key: "/peering/proxies/" + joined.ProxyID, Value: rec, Expires: e.clock.Now().Add(10 * time.Second)}); err != nil {
		t.Fatalf("peering record: %v", err)
	}
	if _, err := proxy.PeerPut(ctx, storage.Item{Key: "/peering/proxies/someone-else", Value: rec, Expires: e.clock.Now().Add(10 * time.Second)}); err == nil {
		t.Fatal("a proxy wrote another's peering record through the API")
	}
	select {
	case ev := <-events:
		if ev.Type != storage.EventPut || ev.Item.Key != "/peering/proxies/"+joined.ProxyID || string(ev.Item.Value) != string(rec) || ev.Item.Expires.IsZero() {
			t.Fatalf("peering watch event: %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peering watch saw nothing")
	}
	items, err := proxy.PeerList(ctx)
	if err != nil || len(items) != 1 || items[0].Revision == 0 {
		t.Fatalf("peering list: %v %+v", err, items)
	}
	if err := proxy.PeerDelete(ctx, "/peering/proxies/"+joined.ProxyID); err != nil {
		t.Fatalf("peering delete: %v", err)
	}
	_, peerPub := newKey(t)
	if der, err := proxy.PeerCert(ctx, peerPub); err != nil || len(der) == 0 {
		t.Fatalf("peering certificate: %v", err)
	}
}
