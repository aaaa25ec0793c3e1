package krl

import (
	"crypto/ed25519"
	"crypto/rand"
	"reflect"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func newCA(t testing.TB) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func cert(t testing.TB, ca ssh.Signer, keyID string, serial uint64) *ssh.Certificate {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	c := &ssh.Certificate{Key: k, Serial: serial, CertType: ssh.UserCert, KeyId: keyID, ValidPrincipals: []string{"dev"},
		ValidAfter: 0, ValidBefore: ssh.CertTimeInfinity}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTripAndRevoked(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	k := &KRL{Version: 7, Generated: time.Unix(1700000000, 0).UTC(), Comment: "warden",
		Certs: []CertSection{{CA: ca.PublicKey(), Serials: []uint64{9, 3, 3, 0}, Ranges: [][2]uint64{{100, 200}, {5, 4}}, KeyIDs: []string{"mallory", "eve", "eve"}}}}
	got, err := Parse(k.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	want := &KRL{Version: 7, Generated: k.Generated, Comment: "warden",
		Certs: []CertSection{{CA: got.Certs[0].CA, Serials: []uint64{3, 9}, Ranges: [][2]uint64{{100, 200}}, KeyIDs: []string{"eve", "mallory"}}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	if string(got.Certs[0].CA.Marshal()) != string(ca.PublicKey().Marshal()) {
		t.Fatal("CA key changed in the round trip")
	}
	for _, tc := range []struct {
		c    *ssh.Certificate
		want bool
	}{
		{cert(t, ca, "alice", 3), true},
		{cert(t, ca, "alice", 150), true},
		{cert(t, ca, "alice", 201), false},
		{cert(t, ca, "eve", 42), true},
		{cert(t, ca, "alice", 0), false},
		{cert(t, other, "eve", 3), false}, // another CA's certificates
	} {
		if got := got.Revoked(tc.c); got != tc.want {
			t.Errorf("Revoked(%s serial %d) = %v, want %v", tc.c.KeyId, tc.c.Serial, got, tc.want)
		}
	}
}

func TestParseRefusesBadInput(t *testing.T) {
	good := (&KRL{Certs: []CertSection{{Serials: []uint64{1}}}}).Marshal()
	for name, b := range map[string][]byte{
		"empty":         nil,
		"bad magic":     append([]byte("SSHKRX\n\x00"), good[8:]...),
		"truncated":     good[:len(good)-3],
		"trailing byte": append(append([]byte(nil), good...), 1),
		"big string":    append(append([]byte(nil), good[:8+4+8+8+8]...), 0xff, 0xff, 0xff, 0xff),
	} {
		if _, err := Parse(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	ca := newCA(f)
	f.Add((&KRL{Version: 1, Comment: "x", Certs: []CertSection{{CA: ca.PublicKey(), Serials: []uint64{1, 2}, Ranges: [][2]uint64{{3, 9}},
		KeyIDs: []string{"a"}}}}).Marshal())
	f.Add((&KRL{Certs: []CertSection{{KeyIDs: []string{"b", "c"}}}}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := Parse(b)
		if err != nil {
			return
		}
		// What parses re-encodes to a KRL that parses to the same
		// revocations (in canonical order).
		again, err := Parse(k.Marshal())
		if err != nil {
			t.Fatalf("re-encoded KRL does not parse: %v", err)
		}
		if !reflect.DeepEqual(canonical(again), canonical(k)) {
			t.Fatalf("round trip changed the KRL:\n%+v\n%+v", again, k)
		}
	})
}

// canonical is k as Marshal writes it, CA keys as their wire bytes.
func canonical(k *KRL) any {
	c, _ := Parse(k.Marshal())
	type sec struct {
		CA      string
		Serials []uint64
		Ranges  [][2]uint64
		IDs     []string
	}
	out := []sec{}
	for _, s := range c.Certs {
		x := sec{Serials: s.Serials, Ranges: s.Ranges, IDs: s.KeyIDs}
		if s.CA != nil {
			x.CA = string(s.CA.Marshal())
		}
		out = append(out, x)
	}
	return []any{c.Version, c.Generated, c.Comment, out}
}

// BenchmarkMarshal100kSerials: the target is 100,000 revoked
// serials in at most 100 ms. It reports the size.
func BenchmarkMarshal100kSerials(b *testing.B) {
	ca := newCA(b)
	serials := make([]uint64, 100_000)
	for i := range serials {
		var x [8]byte
		_, _ = rand.Read(x[:])
		serials[i] = uint64(x[0])<<56 | uint64(x[1])<<48 | uint64(x[2])<<40 | uint64(x[3])<<32 | uint64(x[4])<<24 | uint64(x[5])<<16 | uint64(x[6])<<8 | uint64(x[7]) | 1
	}
	var n int
	for b.Loop() {
		k := &KRL{Version: 1, Generated: time.Now(), Certs: []CertSection{{CA: ca.PublicKey(), Serials: serials}}}
		n = len(k.Marshal())
	}
	b.ReportMetric(float64(n), "bytes")
}
