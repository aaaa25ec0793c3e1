package ca

import (
	"testing"
	"time"
)

// BenchmarkIssueUser measures signing a typical user certificate. The
// product target is 2,000 certificates/s on 2 cores, i.e. <= 1ms/op per
// core; run with -cpu 1,2 and compare the parallel variant.
func BenchmarkIssueUser(b *testing.B) {
	a := testAuthority(b)
	req := baseUserRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.IssueUser(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssueUserParallel(b *testing.B) {
	a := testAuthority(b)
	req := baseUserRequest(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.IssueUser(req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkIdentityFromSSHCert(b *testing.B) {
	a := testAuthority(b)
	cert, err := a.IssueUser(baseUserRequest(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := IdentityFromSSHCert(cert); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssueTLSClient(b *testing.B) {
	a := testAuthority(b)
	key := newECKey(b)
	id := TLSIdentity{Username: "alice", Kind: KindUser, Roles: []string{"access", "dev"},
		Traits: map[string][]string{"logins": {"alice"}}}
	b.ReportAllocs()
	for b.Loop() {
		der, err := a.IssueTLSClient(key.Public(), id, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		_ = der
	}
}
