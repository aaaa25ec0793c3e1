package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/ca"
)

// The cache of decoded client certificates answers what the certificate
// says, as CallerFromTLS does; what one request does with its caller does
// not reach the next; a certificate that is not a user's still fails.
func TestKubeCallersCache(t *testing.T) {
	keys, err := ca.GenerateKeys("test")
	if err != nil {
		t.Fatal(err)
	}
	authority, err := ca.New(keys, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	issue := func(id ca.TLSIdentity) *x509.Certificate {
		der, err := authority.IssueTLSClient(pub, id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	alice := issue(ca.TLSIdentity{Kind: ca.KindUser, Username: "alice", Roles: []string{"dev", "ops"},
		Traits: map[string][]string{"logins": {"alice"}}})
	var k kubeCallers
	for i := range 3 {
		c, err := k.get(alice)
		if err != nil {
			t.Fatal(err)
		}
		if c.User != "alice" || !slices.Equal(c.Roles, []string{"dev", "ops"}) || !slices.Equal(c.Traits["logins"], []string{"alice"}) {
			t.Fatalf("request %d: %+v", i, c)
		}
		// What a request does with its copy stays with it.
		c.Roles[0], c.Traits["logins"][0] = "admin", "root"
		c.Traits["new"] = []string{"x"}
	}
	bad := issue(ca.TLSIdentity{Kind: ca.KindUser, Username: "bob"})
	bad.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for range 2 {
		if c, err := k.get(bad); err == nil {
			t.Fatalf("a certificate that is not a client certificate: %+v", c)
		}
	}
}
