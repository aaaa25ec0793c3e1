package ca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

// FuzzIdentityFromSSHCert fuzzes the Warden extension values (and key ID
// and principal) of a user certificate. Decoding must never panic, must
// respect its limits, and whatever it accepts must survive re-issuing and
// decoding again unchanged.
func FuzzIdentityFromSSHCert(f *testing.F) {
	f.Add("alice", "alice", `["dev","access"]`, `{"logins":["alice"],"groups":["eng"]}`, `["r-1"]`, true, true, `"2026-11-22T12:00:00.5Z"`, `"totp-1a2b"`)
	f.Add("bob", "ubuntu", `[]`, `{}`, `[]`, true, false, "", "")
	f.Add("bob", "root", `null`, `null`, `null`, true, true, `null`, `null`)
	f.Add("x", "x", `["a"] ["b"]`, `{"a":["x"],"a":["y"]}`, `["../../etc"]`, true, true, `"yesterday"`, `"../x"`)
	f.Add("x", "x", `[`+strings.Repeat(`"r",`, 300)+`"r"]`, `{"k":null}`, `[1,2]`, true, true, `"2026-11-22T12:00:00Z" 1`, `["d"]`)
	f.Add("x", "x", `["\ud800"]`, `{"k":["\u0000"]}`, `[{}]`, false, false, `1`, `"`+strings.Repeat("d", 200)+`"`)
	f.Add("x", "x", `[[[[[[[[[[[[[[[[[[[[`, `{"a":{"b":[]}}`, `"s"`, true, true, `"9999-12-31T23:59:59Z"`, `""`)

	a := testAuthority(f)
	key := newSSHKey(f)
	f.Fuzz(func(t *testing.T, keyID, principal, roles, traits, requests string, hasTraits, hasRequests bool, issued, mfa string) {
		ext := map[string]string{ExtRoles: roles}
		if hasTraits {
			ext[ExtTraits] = traits
		}
		if hasRequests {
			ext[ExtRequests] = requests
		}
		if issued != "" {
			ext[ExtIssued] = issued
		}
		if mfa != "" {
			ext[ExtMFADevice] = mfa
		}
		c := &ssh.Certificate{
			CertType:        ssh.UserCert,
			KeyId:           keyID,
			ValidPrincipals: []string{principal},
			ValidBefore:     uint64(testNow.Add(time.Hour).Unix()),
			Permissions:     ssh.Permissions{Extensions: ext},
		}
		id, err := IdentityFromSSHCert(c)
		if err != nil {
			return
		}
		if len(id.Roles) > MaxRoles || len(id.RequestIDs) > MaxRequestIDs || len(id.Traits) > MaxTraitKeys {
			t.Fatalf("limits exceeded: %d roles, %d requests, %d traits", len(id.Roles), len(id.RequestIDs), len(id.Traits))
		}
		cert, err := a.IssueUser(UserCertRequest{
			PublicKey: key, Username: id.Username, Principals: id.Principals, Roles: id.Roles, Traits: id.Traits,
			RequestIDs: id.RequestIDs, Issued: id.Issued, MFADevice: id.MFADevice, TTL: time.Hour,
		})
		if id.Issued.After(testNow.Add(time.Minute)) {
			if err == nil {
				t.Fatalf("issued a certificate with an issue time in the future: %v", id.Issued)
			}
			return
		}
		if err != nil {
			t.Fatalf("decoded identity %+v cannot be re-issued: %v", id, err)
		}
		again, err := IdentityFromSSHCert(cert)
		if err != nil {
			t.Fatalf("re-issued cert does not decode: %v", err)
		}
		if diff := cmp.Diff(id, again, equateEmpty); diff != "" {
			t.Fatalf("identity changed through re-issue (-first +second):\n%s", diff)
		}
	})
}

// FuzzIdentityFromTLSCert fuzzes the subject and traits extension of a
// client certificate, and separately whole DER certificates.
func FuzzIdentityFromTLSCert(f *testing.F) {
	a := testAuthority(f)
	key := newECKey(f)
	der, err := a.IssueTLSClient(key.Public(), TLSIdentity{Username: "alice", Kind: KindUser, Roles: []string{"dev"},
		Traits: map[string][]string{"logins": {"alice"}}}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("alice", KindUser, "dev\naccess", []byte(`{"logins":["alice"]}`), true, []byte(nil), []byte(`["r-1"]`), uint8(0))
	f.Add("n1", KindNode, "", []byte(`{}`), false, []byte(nil), []byte(`"2026-11-22T11:59:00.25Z"`), uint8(1))
	f.Add("root", KindAdmin, "a\n\nb", []byte(`{"a":["x"],"a":["y"]}`), true, der, []byte(`"totp-1"`), uint8(2))
	f.Add("", "", "", []byte(`null`), true, der[:len(der)/2], []byte(`"a" "b"`), uint8(3))
	f.Fuzz(func(t *testing.T, cn, kind, orgs string, traitsJSON []byte, hasTraits bool, rawDER, extra []byte, extraKind uint8) {
		if len(rawDER) > 0 {
			if c, err := x509.ParseCertificate(rawDER); err == nil {
				_, _ = IdentityFromTLSCert(c)
			}
		}
		c := &x509.Certificate{
			Subject:     pkix.Name{CommonName: cn, OrganizationalUnit: []string{kind}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotBefore:   testNow.Add(-time.Minute),
		}
		if orgs != "" {
			c.Subject.Organization = strings.Split(orgs, "\n")
		}
		if hasTraits {
			v, err := asn1.Marshal(traitsJSON)
			if err != nil {
				return
			}
			c.Extensions = []pkix.Extension{{Id: OIDTraits, Value: v}}
		}
		if oid := []asn1.ObjectIdentifier{OIDRequests, OIDIssued, OIDMFADevice}; int(extraKind) < len(oid) {
			v, err := asn1.Marshal(extra)
			if err != nil {
				return
			}
			c.Extensions = append(c.Extensions, pkix.Extension{Id: oid[extraKind], Value: v})
		}
		id, err := IdentityFromTLSCert(c)
		if err != nil {
			return
		}
		if len(id.Roles) > MaxRoles || len(id.Traits) > MaxTraitKeys {
			t.Fatalf("limits exceeded: %+v", id)
		}
		der, err := a.IssueTLSClient(key.Public(), *id, time.Hour)
		if id.Issued.After(testNow.Add(time.Minute)) {
			if err == nil {
				t.Fatalf("issued a certificate with an issue time in the future: %v", id.Issued)
			}
			return
		}
		if err != nil {
			t.Fatalf("decoded identity %+v cannot be re-issued: %v", id, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		again, err := a.VerifyTLSClient(cert)
		if err != nil {
			t.Fatalf("re-issued cert does not verify: %v", err)
		}
		if diff := cmp.Diff(id, again, equateEmpty); diff != "" {
			t.Fatalf("identity changed through re-issue (-first +second):\n%s", diff)
		}
	})
}
