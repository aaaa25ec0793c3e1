package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestGenerateKeys(t *testing.T) {
	t.Parallel()
	k, _ := testKeys(t)
	if k.ClusterName != "alpha" {
		t.Fatalf("cluster name %q", k.ClusterName)
	}
	// Keys survive a JSON roundtrip, the way auth stores them.
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cluster_name", "user_ca_key", "host_ca_key", "tls_ca_key", "tls_ca_cert"} {
		if !bytes.Contains(b, []byte(`"`+f+`"`)) {
			t.Errorf("JSON lacks %q", f)
		}
	}
	var back Keys
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	a, err := New(&back, nil)
	if err != nil {
		t.Fatalf("New after JSON roundtrip: %v", err)
	}
	for _, pemBytes := range [][]byte{k.UserCAKey, k.HostCAKey} {
		if blk, _ := pem.Decode(pemBytes); blk == nil || blk.Type != "OPENSSH PRIVATE KEY" {
			t.Errorf("SSH CA key is not an OpenSSH PEM block")
		}
	}
	if blk, _ := pem.Decode(k.TLSCAKey); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Error("TLS CA key is not PKCS#8 PEM")
	}
	if got := a.UserCAPublicKey().Type(); got != ssh.KeyAlgoED25519 {
		t.Errorf("user CA type %s", got)
	}
	if got := a.HostCAPublicKey().Type(); got != ssh.KeyAlgoED25519 {
		t.Errorf("host CA type %s", got)
	}
	if bytes.Equal(a.UserCAPublicKey().Marshal(), a.HostCAPublicKey().Marshal()) {
		t.Error("user and host CA are the same key")
	}
	c := a.TLSCACert()
	if c.Subject.CommonName != "alpha Warden TLS CA" || !c.IsCA || !c.MaxPathLenZero {
		t.Errorf("TLS CA subject %q IsCA %t", c.Subject.CommonName, c.IsCA)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("TLS CA key %T", c.PublicKey)
	}
	if v := c.NotAfter.Sub(c.NotBefore); v < TLSCAValidity || v > TLSCAValidity+2*time.Minute {
		t.Errorf("TLS CA validity %v", v)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("TLS CA not self-signed: %v", err)
	}
	if blk, _ := pem.Decode(a.TLSCAPEM()); blk == nil || !bytes.Equal(blk.Bytes, c.Raw) {
		t.Error("TLSCAPEM does not hold the CA certificate")
	}
	if s := fmt.Sprintf("%v %+v %#v %s", *k, *k, *k, k); strings.Contains(s, "PRIVATE") {
		t.Errorf("Keys formatting leaks key material: %s", s)
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	t.Parallel()
	a, b := testKeys(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaBlock, err := ssh.MarshalPrivateKey(rsaKey, "")
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(rsaBlock)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edBlock, _ := ssh.MarshalPrivateKey(edPriv, "")

	mod := func(f func(k *Keys)) *Keys {
		c := *a
		f(&c)
		return &c
	}
	tests := []struct {
		name string
		keys *Keys
		want string
	}{
		{"nil", nil, "nil keys"},
		{"no cluster", mod(func(k *Keys) { k.ClusterName = "" }), "cluster name"},
		{"bad cluster", mod(func(k *Keys) { k.ClusterName = "a b" }), "cluster name"},
		{"no user key", mod(func(k *Keys) { k.UserCAKey = nil }), "user CA"},
		{"garbage host key", mod(func(k *Keys) { k.HostCAKey = []byte("nope") }), "host CA"},
		{"RSA user CA", mod(func(k *Keys) { k.UserCAKey = rsaPEM }), "want Ed25519"},
		{"same user and host", mod(func(k *Keys) { k.HostCAKey = k.UserCAKey }), "same key"},
		{"TLS key of other cluster", mod(func(k *Keys) { k.TLSCAKey = b.TLSCAKey }), "does not match"},
		{"TLS key is SSH key", mod(func(k *Keys) { k.TLSCAKey = pem.EncodeToMemory(edBlock) }), "PRIVATE KEY"},
		{"TLS cert missing", mod(func(k *Keys) { k.TLSCACert = nil }), "CERTIFICATE"},
		{"TLS cert is key", mod(func(k *Keys) { k.TLSCACert = k.TLSCAKey }), "CERTIFICATE"},
	}
	for _, tt := range tests {
		_, err := New(tt.keys, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := GenerateKeys("bad name!"); err == nil {
		t.Error("GenerateKeys accepted a bad cluster name")
	}
}

func TestCertPoolIsACopy(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	p := a.CertPool()
	p.AddCert(otherAuthority(t).TLSCACert())
	if a.CertPool().Equal(p) {
		t.Error("modifying a returned pool changed the authority's pool")
	}
}
