package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"testing"
	"time"
)

// TestLeafDERMatchesCreateCertificate: every leaf certificate the
// authority signs with its own encoder (signLeafDER) has, byte for byte,
// the TBSCertificate x509.CreateCertificate makes from the same template,
// verifies against the CA with the standard library, and chains to the CA
// for its key usage.
func TestLeafDERMatchesCreateCertificate(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	var leaves int
	a.onLeaf = func(tmpl *x509.Certificate, pub crypto.PublicKey, der []byte) {
		leaves++
		got, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("leaf %d: parse: %v", leaves, err)
		}
		if err := got.CheckSignatureFrom(a.TLSCACert()); err != nil {
			t.Errorf("leaf %d: signature does not verify with the CA: %v", leaves, err)
		}
		if err := a.checkLeafDER(der); err != nil {
			t.Errorf("leaf %d: %v", leaves, err)
		}
		ref, err := x509.CreateCertificate(rand.Reader, tmpl, a.tlsCert, pub, a.tlsKey)
		if err != nil {
			t.Fatalf("leaf %d: CreateCertificate: %v", leaves, err)
		}
		want, err := x509.ParseCertificate(ref)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.RawTBSCertificate, want.RawTBSCertificate) {
			t.Errorf("leaf %d (%s): TBSCertificate differs from CreateCertificate's:\n got %x\nwant %x", leaves, got.Subject, got.RawTBSCertificate, want.RawTBSCertificate)
		}
		if got.SignatureAlgorithm != want.SignatureAlgorithm || got.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Errorf("leaf %d: signature algorithm %v, CreateCertificate's %v", leaves, got.SignatureAlgorithm, want.SignatureAlgorithm)
		}
		// The whole certificate is the TBS, the algorithm and the
		// signature, as CreateCertificate's (whose signature differs:
		// ECDSA is randomised).
		if len(der)-len(got.Signature) != len(ref)-len(want.Signature) {
			t.Errorf("leaf %d: outer encoding differs: %d+%d bytes, CreateCertificate %d+%d", leaves, len(der)-len(got.Signature), len(got.Signature), len(ref)-len(want.Signature), len(want.Signature))
		}
	}
	ec256, ec384 := newECKey(t), mustECKey(t, elliptic.P384())
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubs := []crypto.PublicKey{ec256.Public(), ec384.Public(), ed.Public(), rk.Public()}
	ids := []TLSIdentity{
		{Kind: KindNode, NodeID: "5d2d8f7a-0c3e-4f7b-9a63-9d8f1e2c3b4a"},
		{Kind: KindProxy, NodeID: "proxy-1"},
		{Username: "alice", Kind: KindUser, Roles: []string{"zeta", "access", "dev", "a-long-role-name-xxxxxxxxxxxxxxxxxxxxxxxx"},
			Traits: map[string][]string{"logins": {"alice", "root"}, "groups": {"ßtrange", "<&>"}}, Issued: testNow.Add(-1500 * time.Millisecond)},
		{Username: "root_admin", Kind: KindAdmin, Roles: []string{"editor"}, MFADevice: "totp-0a1b2c",
			RequestIDs: []string{"0b7c3a2e-5f7e-4d8e-9d2a-1f0c7f8e6a11", "1b7c3a2e-5f7e-4d8e-9d2a-1f0c7f8e6a11"}},
		{Username: "bot-ci", Kind: KindUser, Roles: []string{"bot-ci"}, BotGeneration: 12345678901, BotInstance: "inst-1"},
	}
	for _, pub := range pubs {
		for _, id := range ids {
			for _, ttl := range []time.Duration{time.Minute, 30 * time.Hour} {
				if _, err := a.IssueTLSClient(pub, id, ttl); err != nil {
					t.Fatalf("IssueTLSClient %s %T: %v", id.Kind, pub, err)
				}
			}
		}
		if _, err := a.IssueTLSServer(pub, []string{"proxy.example.com", "*.example.com"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.ParseIP("10.1.2.3").To4()}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := a.IssueTLSServer(pub, nil, []net.IP{net.ParseIP("fd00::1")}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := a.IssueProxyPeer(pub, "proxy-7", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if want := len(pubs) * (len(ids)*2 + 3); leaves != want {
		t.Errorf("%d leaves signed by the leaf encoder, want %d (all)", leaves, want)
	}
}

// TestLeafEncoderTimes covers the validity encodings: UTCTime to 2049,
// GeneralizedTime from 2050 (as encoding/asn1), sub-second parts dropped.
func TestLeafEncoderTimes(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	key := newECKey(t)
	for _, nb := range []time.Time{
		time.Date(2049, 12, 31, 23, 59, 59, 999, time.UTC),
		time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1999, 3, 4, 5, 6, 7, 8, time.FixedZone("x", 3600)),
	} {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1 << 62), NotBefore: nb, NotAfter: nb.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, BasicConstraintsValid: true,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		tmpl.Subject.CommonName = "t"
		der, err := a.signLeafDER(tmpl, key.Public())
		if err != nil {
			t.Fatal(err)
		}
		ref, err := x509.CreateCertificate(rand.Reader, tmpl, a.tlsCert, key.Public(), a.tlsKey)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := x509.ParseCertificate(der)
		want, _ := x509.ParseCertificate(ref)
		if got == nil || want == nil || !bytes.Equal(got.RawTBSCertificate, want.RawTBSCertificate) {
			t.Errorf("not before %s: TBSCertificate differs from CreateCertificate's", nb)
		}
		if err := a.checkLeafDER(der); err != nil {
			t.Error(err)
		}
	}
}

// TestLeafEncoderLeavesOtherTemplates: templates with fields the encoder
// does not write go through x509.CreateCertificate.
func TestLeafEncoderLeavesOtherTemplates(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	key := newECKey(t)
	base := func() *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: testNow, NotAfter: testNow.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	}
	if !leafCovered(base()) {
		t.Fatal("the base leaf template is not covered")
	}
	for name, change := range map[string]func(*x509.Certificate){
		"CA":             func(c *x509.Certificate) { c.IsCA = true },
		"email":          func(c *x509.Certificate) { c.EmailAddresses = []string{"a@example.com"} },
		"CRL":            func(c *x509.Certificate) { c.CRLDistributionPoints = []string{"http://x"} },
		"no serial":      func(c *x509.Certificate) { c.SerialNumber = nil },
		"key usage ext":  func(c *x509.Certificate) { c.ExtraExtensions = append(c.ExtraExtensions, pkixExt(oidExtKeyUsage)) },
		"code signing":   func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning} },
		"no constraints": func(c *x509.Certificate) { c.BasicConstraintsValid = false },
	} {
		tmpl := base()
		change(tmpl)
		if _, err := a.signLeafDER(tmpl, key.Public()); err != errLeafTemplateNotCovered {
			t.Errorf("%s: signLeafDER: %v, want errLeafTemplateNotCovered", name, err)
		}
	}
}

func mustECKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pkixExt(oid asn1.ObjectIdentifier) pkix.Extension {
	return pkix.Extension{Id: oid, Critical: true, Value: []byte{3, 2, 7, 128}}
}

// BenchmarkSignLeaf compares, in one run, a node's X.509 certificate
// signed by x509.CreateCertificate (as before) and by signLeafDER.
func BenchmarkSignLeaf(b *testing.B) {
	a := testAuthority(b)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	pub := ed.Public()
	tmpl, err := a.leafTemplate(pub, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	tmpl.Subject.CommonName = "5d2d8f7a-0c3e-4f7b-9a63-9d8f1e2c3b4a"
	tmpl.Subject.OrganizationalUnit = []string{KindNode}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	b.Run("CreateCertificate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, a.tlsCert, pub, a.tlsKey); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signLeafDER", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.signLeafDER(tmpl, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
}
