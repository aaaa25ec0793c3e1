package ca

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/crypto/ssh"
)

// testNow is the fixed clock of the shared test authorities.
var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

var (
	keysOnce           sync.Once
	keysA, keysB       *Keys
	keysErrA, keysErrB error
)

// testKeys returns two independent clusters' keys, generated once.
func testKeys(t testing.TB) (a, b *Keys) {
	t.Helper()
	keysOnce.Do(func() {
		keysA, keysErrA = generateKeys("alpha", testNow.Add(-time.Hour))
		keysB, keysErrB = generateKeys("beta", testNow.Add(-time.Hour))
	})
	if keysErrA != nil || keysErrB != nil {
		t.Fatalf("generate keys: %v %v", keysErrA, keysErrB)
	}
	return keysA, keysB
}

// testAuthority returns cluster alpha's authority at testNow.
func testAuthority(t testing.TB) *Authority {
	t.Helper()
	k, _ := testKeys(t)
	a, err := New(k, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func otherAuthority(t testing.TB) *Authority {
	t.Helper()
	_, k := testKeys(t)
	a, err := New(k, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newSSHKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func baseUserRequest(t testing.TB) UserCertRequest {
	return UserCertRequest{
		PublicKey:  newSSHKey(t),
		Username:   "alice",
		Principals: []string{"alice", "ubuntu"},
		Roles:      []string{"access", "dev"},
		Traits:     map[string][]string{"logins": {"alice", "ubuntu"}, "groups": {"eng"}},
		RequestIDs: []string{"0b7c3a2e-5f7e-4d8e-9d2a-1f0c7f8e6a11"},
		TTL:        8 * time.Hour,
		PermitPTY:  true,
	}
}

// connMeta is the minimal ssh.ConnMetadata CertChecker.Authenticate needs.
type connMeta struct{ user string }

func (c connMeta) User() string          { return c.user }
func (c connMeta) SessionID() []byte     { return nil }
func (c connMeta) ClientVersion() []byte { return []byte("SSH-2.0-test") }
func (c connMeta) ServerVersion() []byte { return []byte("SSH-2.0-test") }
func (c connMeta) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000} }
func (c connMeta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22} }

var (
	sortStrings = cmpopts.SortSlices(func(a, b string) bool { return a < b })
	equateEmpty = cmpopts.EquateEmpty()
)
