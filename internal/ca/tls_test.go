package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestIssueTLSClientVerifyAndRoundtrip(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	other := otherAuthority(t)
	key := newECKey(t)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		pub  any
		id   TLSIdentity
	}{
		{"user", key.Public(), TLSIdentity{Username: "alice", Kind: KindUser, Roles: []string{"access", "dev"},
			Traits: map[string][]string{"logins": {"alice"}, "groups": {"eng", "ops"}}, Issued: testNow}},
		{"admin no traits", edPriv.Public(), TLSIdentity{Username: "root_admin", Kind: KindAdmin, Roles: []string{"editor"}, Issued: testNow}},
		{"node", key.Public(), TLSIdentity{Kind: KindNode, NodeID: "5d2d8f7a-0c3e-4f7b-9a63-9d8f1e2c3b4a", Roles: []string{"node"}, Issued: testNow}},
		{"no roles", key.Public(), TLSIdentity{Username: "bob", Kind: KindUser, Issued: testNow}},
		{"access request, issue time and MFA device", key.Public(), TLSIdentity{Username: "carol", Kind: KindUser, Roles: []string{"prod"},
			RequestIDs: []string{"0b7c3a2e-5f7e-4d8e-9d2a-1f0c7f8e6a11"}, Issued: testNow.Add(-1500 * time.Millisecond), MFADevice: "totp-0a1b2c"}},
	}
	for _, tt := range tests {
		der, err := a.IssueTLSClient(tt.pub, tt.id, time.Hour)
		if err != nil {
			t.Fatalf("%s: IssueTLSClient: %v", tt.name, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("%s: parse: %v", tt.name, err)
		}
		// Chain verification with the pool, as a TLS server would do.
		opts := x509.VerifyOptions{Roots: a.CertPool(), CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("%s: Verify: %v", tt.name, err)
		}
		opts.Roots = other.CertPool()
		if _, err := cert.Verify(opts); err == nil {
			t.Errorf("%s: verified against another cluster's CA", tt.name)
		}
		opts.Roots = a.CertPool()
		opts.CurrentTime = testNow.Add(time.Hour + time.Second)
		if _, err := cert.Verify(opts); err == nil {
			t.Errorf("%s: verified after expiry", tt.name)
		}
		opts.CurrentTime = testNow
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if _, err := cert.Verify(opts); err == nil {
			t.Errorf("%s: client cert verified for server auth", tt.name)
		}

		got, err := a.VerifyTLSClient(cert)
		if err != nil {
			t.Fatalf("%s: VerifyTLSClient: %v", tt.name, err)
		}
		if diff := cmp.Diff(&tt.id, got, equateEmpty, sortStrings); diff != "" {
			t.Errorf("%s: identity (-want +got):\n%s", tt.name, diff)
		}
		if _, err := other.VerifyTLSClient(cert); err == nil {
			t.Errorf("%s: other authority verified it", tt.name)
		}
		wantCN := tt.id.Username
		if tt.id.Kind == KindNode {
			wantCN = tt.id.NodeID
		}
		if cert.Subject.CommonName != wantCN || cert.Subject.OrganizationalUnit[0] != tt.id.Kind {
			t.Errorf("%s: subject %v", tt.name, cert.Subject)
		}
	}
}

func TestIssueTLSClientRejects(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	key := newECKey(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	user := TLSIdentity{Username: "alice", Kind: KindUser, Roles: []string{"dev"}}
	tests := []struct {
		name string
		pub  any
		id   TLSIdentity
		ttl  time.Duration
	}{
		{"unknown kind", key.Public(), TLSIdentity{Username: "alice", Kind: "root"}, time.Hour},
		{"no kind", key.Public(), TLSIdentity{Username: "alice"}, time.Hour},
		{"bad username", key.Public(), TLSIdentity{Username: "Alice", Kind: KindUser}, time.Hour},
		{"node without ID", key.Public(), TLSIdentity{Kind: KindNode}, time.Hour},
		{"node with username", key.Public(), TLSIdentity{Kind: KindNode, NodeID: "n1", Username: "alice"}, time.Hour},
		{"user with node ID", key.Public(), TLSIdentity{Kind: KindUser, NodeID: "n1", Username: "alice"}, time.Hour},
		{"bad role", key.Public(), TLSIdentity{Username: "alice", Kind: KindUser, Roles: []string{"a,b"}}, time.Hour},
		{"bad trait", key.Public(), TLSIdentity{Username: "alice", Kind: KindUser, Traits: map[string][]string{"": {"x"}}}, time.Hour},
		{"bad request ID", key.Public(), TLSIdentity{Username: "alice", Kind: KindUser, RequestIDs: []string{"../r"}}, time.Hour},
		{"bad MFA device", key.Public(), TLSIdentity{Username: "alice", Kind: KindUser, MFADevice: "a b"}, time.Hour},
		{"issued in the future", key.Public(), TLSIdentity{Username: "alice", Kind: KindUser, Issued: testNow.Add(time.Hour)}, time.Hour},
		{"small RSA", &small.PublicKey, user, time.Hour},
		{"nil key", nil, user, time.Hour},
		{"private key", key, user, time.Hour},
		{"zero TTL", key.Public(), user, 0},
		{"outlives CA", key.Public(), user, MaxCertTTL},
	}
	// Make "outlives CA" meaningful: an authority whose clock is near the
	// CA's expiry.
	late, err := New(mustKeys(t), func() time.Time { return a.TLSCACert().NotAfter.Add(-time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		auth := a
		if tt.name == "outlives CA" {
			auth = late
		}
		if _, err := auth.IssueTLSClient(tt.pub, tt.id, tt.ttl); err == nil {
			t.Errorf("%s: IssueTLSClient succeeded", tt.name)
		}
	}
}

func mustKeys(t *testing.T) *Keys {
	k, _ := testKeys(t)
	return k
}

func TestIssueTLSServer(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	key := newECKey(t)
	der, err := a.IssueTLSServer(key.Public(), []string{"proxy.example.com", "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"proxy.example.com", "localhost", "127.0.0.1", "::1"} {
		opts := x509.VerifyOptions{Roots: a.CertPool(), CurrentTime: testNow, DNSName: host}
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: a.CertPool(), CurrentTime: testNow, DNSName: "evil.example.com"}); err == nil {
		t.Error("verified for a name not in the cert")
	}
	if _, err := IdentityFromTLSCert(cert); err == nil {
		t.Error("server cert decoded as a client identity")
	}

	// A real TLS handshake on loopback with mutual authentication.
	clientDER, err := a.IssueTLSClient(key.Public(), TLSIdentity{Username: "alice", Kind: KindUser, Roles: []string{"dev"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return testNow }
	srvConf := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientCAs:    a.CertPool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		Time:         now,
	}
	cliConf := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{clientDER}, PrivateKey: key}},
		RootCAs:      a.CertPool(),
		ServerName:   "localhost",
		Time:         now,
	}
	c1, c2 := net.Pipe()
	srv := tls.Server(c1, srvConf)
	cli := tls.Client(c2, cliConf)
	errc := make(chan error, 1)
	go func() { errc <- cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	peer := srv.ConnectionState().PeerCertificates
	id, err := IdentityFromTLSCert(peer[0])
	if err != nil || id.Username != "alice" {
		t.Errorf("peer identity %+v, %v", id, err)
	}
	cli.Close()
	srv.Close()

	bad := []struct {
		name string
		dns  []string
		ips  []net.IP
	}{
		{"nothing", nil, nil},
		{"space", []string{"a b"}, nil},
		{"empty", []string{""}, nil},
		{"trailing dot", []string{"a."}, nil},
		{"bad ip", nil, []net.IP{{1, 2, 3}}},
	}
	for _, tt := range bad {
		if _, err := a.IssueTLSServer(key.Public(), tt.dns, tt.ips, time.Hour); err == nil {
			t.Errorf("%s: IssueTLSServer succeeded", tt.name)
		}
	}
	if _, err := a.IssueTLSServer(key.Public(), []string{"*.nodes.example.com"}, nil, time.Hour); err != nil {
		t.Errorf("wildcard: %v", err)
	}
}

func TestIdentityFromTLSCertRejects(t *testing.T) {
	t.Parallel()
	traitsExt := func(js string) pkix.Extension {
		v, _ := asn1.Marshal([]byte(js))
		return pkix.Extension{Id: OIDTraits, Value: v}
	}
	good := func() *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: "alice", Organization: []string{"dev"}, OrganizationalUnit: []string{KindUser}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			Extensions:  []pkix.Extension{traitsExt(`{"logins":["alice"]}`)},
		}
	}
	if _, err := IdentityFromTLSCert(good()); err != nil {
		t.Fatalf("good: %v", err)
	}
	tests := []struct {
		name string
		mod  func(c *x509.Certificate)
		want string
	}{
		{"server usage", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }, "not a client"},
		{"CA", func(c *x509.Certificate) { c.IsCA = true }, "CA certificate"},
		{"no OU", func(c *x509.Certificate) { c.Subject.OrganizationalUnit = nil }, "organizational unit"},
		{"two OUs", func(c *x509.Certificate) { c.Subject.OrganizationalUnit = []string{KindUser, KindAdmin} }, "organizational unit"},
		{"bad kind", func(c *x509.Certificate) { c.Subject.OrganizationalUnit = []string{"superuser"} }, "kind"},
		{"bad CN", func(c *x509.Certificate) { c.Subject.CommonName = "alice smith" }, "username"},
		{"bad node CN", func(c *x509.Certificate) {
			c.Subject.OrganizationalUnit = []string{KindNode}
			c.Subject.CommonName = ""
		}, "node ID"},
		{"bad role", func(c *x509.Certificate) { c.Subject.Organization = []string{"a b"} }, "role name"},
		{"too many roles", func(c *x509.Certificate) { c.Subject.Organization = manyStrings("r", MaxRoles+1) }, "roles"},
		{"traits not DER", func(c *x509.Certificate) { c.Extensions[0].Value = []byte(`{"a":["b"]}`) }, "OCTET STRING"},
		{"traits bad JSON", func(c *x509.Certificate) { c.Extensions[0] = traitsExt(`{"a":`) }, "bad JSON"},
		{"traits dup ext", func(c *x509.Certificate) { c.Extensions = append(c.Extensions, traitsExt(`{}`)) }, "duplicate"},
		{"traits huge", func(c *x509.Certificate) {
			c.Extensions[0] = traitsExt(`{"a":["` + strings.Repeat("x", MaxExtensionLen) + `"]}`)
		}, "at most"},
	}
	for _, tt := range tests {
		c := good()
		tt.mod(c)
		_, err := IdentityFromTLSCert(c)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: IdentityFromTLSCert = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := IdentityFromTLSCert(nil); err == nil {
		t.Error("nil decoded")
	}
}
