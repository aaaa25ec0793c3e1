package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The leaf certificate encoder. x509.CreateCertificate builds the
// certificate by reflection (encoding/asn1) and then verifies its own
// signature with the CA's public key: for the P-256 CA an ECDSA
// verification, three times the cost of the signature itself, on every
// node renewal and login. signLeafDER encodes the same to-be-signed
// certificate directly, byte for byte what CreateCertificate makes from
// the leaf templates of this package (TestLeafDERMatchesCreateCertificate
// compares them), and signs it with the in-memory CA key, which needs no
// check of its own: the issued certificates are verified against the CA in
// the tests (and by every TLS peer that receives them).

var (
	oidECDSAWithSHA256        = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidExtKeyUsage            = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtendedKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtBasicConstraints    = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtAuthorityKeyID      = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtSubjectAltName      = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtKeyUsageClientAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidExtKeyUsageServerAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	errLeafTemplateNotCovered = errors.New("template has fields the leaf encoder does not cover")
)

// leafCovered reports whether signLeafDER encodes every field tmpl sets
// (the templates leafTemplate and its callers make); others go through
// x509.CreateCertificate.
func leafCovered(tmpl *x509.Certificate) bool {
	if tmpl.IsCA || tmpl.MaxPathLen != 0 || tmpl.MaxPathLenZero || len(tmpl.RawSubject) > 0 ||
		len(tmpl.SubjectKeyId) > 0 || len(tmpl.AuthorityKeyId) > 0 || tmpl.SignatureAlgorithm != x509.UnknownSignatureAlgorithm ||
		len(tmpl.UnknownExtKeyUsage) > 0 || len(tmpl.EmailAddresses) > 0 || len(tmpl.URIs) > 0 ||
		len(tmpl.OCSPServer) > 0 || len(tmpl.IssuingCertificateURL) > 0 || len(tmpl.CRLDistributionPoints) > 0 ||
		len(tmpl.PolicyIdentifiers) > 0 || len(tmpl.Policies) > 0 || len(tmpl.Subject.ExtraNames) > 0 ||
		len(tmpl.PermittedDNSDomains) > 0 || len(tmpl.ExcludedDNSDomains) > 0 || len(tmpl.PermittedIPRanges) > 0 ||
		len(tmpl.ExcludedIPRanges) > 0 || len(tmpl.PermittedEmailAddresses) > 0 || len(tmpl.ExcludedEmailAddresses) > 0 ||
		len(tmpl.PermittedURIDomains) > 0 || len(tmpl.ExcludedURIDomains) > 0 || !tmpl.BasicConstraintsValid ||
		tmpl.SerialNumber == nil || tmpl.SerialNumber.Sign() <= 0 || tmpl.KeyUsage == 0 {
		return false
	}
	for _, u := range tmpl.ExtKeyUsage {
		if u != x509.ExtKeyUsageClientAuth && u != x509.ExtKeyUsageServerAuth {
			return false
		}
	}
	for _, e := range tmpl.ExtraExtensions {
		// A standard extension given as an extra one replaces
		// CreateCertificate's own: not covered.
		for _, std := range []asn1.ObjectIdentifier{oidExtKeyUsage, oidExtExtendedKeyUsage, oidExtBasicConstraints,
			oidExtAuthorityKeyID, oidExtSubjectAltName} {
			if e.Id.Equal(std) {
				return false
			}
		}
	}
	for _, ip := range tmpl.IPAddresses {
		if len(ip) != 4 && len(ip) != 16 {
			return false
		}
	}
	return true
}

// signLeafDER encodes tmpl for pub, issued by the TLS CA, and signs it.
func (a *Authority) signLeafDER(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	// ECDSA with SHA-256 is what CreateCertificate chooses for a P-256
	// key, the only TLS CA key New loads.
	key, ok := a.tlsKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() || !leafCovered(tmpl) {
		return nil, errLeafTemplateNotCovered
	}
	tbs, err := a.leafTBS(tmpl, pub)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		addSigAlg(b)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

func addSigAlg(b *cryptobyte.Builder) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidECDSAWithSHA256) })
}

// leafTBS is the DER TBSCertificate CreateCertificate(rand, tmpl,
// a.tlsCert, pub, a.tlsKey) would sign.
func (a *Authority) leafTBS(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	subject, err := asn1.Marshal(tmpl.Subject.ToRDNSequence())
	if err != nil {
		return nil, err
	}
	issuer := a.tlsCert.RawSubject
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1Int64(2) })
		b.AddASN1BigInt(tmpl.SerialNumber)
		addSigAlg(b)
		b.AddBytes(issuer)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, tmpl.NotBefore)
			addTime(b, tmpl.NotAfter)
		})
		b.AddBytes(subject)
		b.AddBytes(spki)
		b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				a.addLeafExtensions(b, tmpl, subject)
			})
		})
	})
	return b.Bytes()
}

// addTime adds t as encoding/asn1 marshals a time.Time: UTCTime for the
// years 1950 to 2049, GeneralizedTime otherwise, whole seconds, UTC.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1(cbasn1.UTCTime, func(b *cryptobyte.Builder) { b.AddBytes([]byte(t.Format("060102150405Z"))) })
		return
	}
	b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes([]byte(t.Format("20060102150405Z"))) })
}

// addLeafExtensions adds the extensions in CreateCertificate's order: key
// usage, extended key usage, basic constraints, authority key id, subject
// alternative names, then the template's extra ones.
func (a *Authority) addLeafExtensions(b *cryptobyte.Builder, tmpl *x509.Certificate, subject []byte) {
	ext := func(oid asn1.ObjectIdentifier, critical bool, value func(b *cryptobyte.Builder)) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			if critical {
				b.AddASN1Boolean(true)
			}
			b.AddASN1(cbasn1.OCTET_STRING, value)
		})
	}
	ext(oidExtKeyUsage, true, func(b *cryptobyte.Builder) { addKeyUsage(b, tmpl.KeyUsage) })
	if len(tmpl.ExtKeyUsage) > 0 {
		ext(oidExtExtendedKeyUsage, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, u := range tmpl.ExtKeyUsage {
					if u == x509.ExtKeyUsageClientAuth {
						b.AddASN1ObjectIdentifier(oidExtKeyUsageClientAuth)
					} else {
						b.AddASN1ObjectIdentifier(oidExtKeyUsageServerAuth)
					}
				}
			})
		})
	}
	// A leaf's basic constraints: cA false (the default, left out) and no
	// path length: an empty SEQUENCE.
	ext(oidExtBasicConstraints, true, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {})
	})
	if skid := a.tlsCert.SubjectKeyId; len(skid) > 0 && string(subject) != string(a.tlsCert.RawSubject) {
		ext(oidExtAuthorityKeyID, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(skid) })
			})
		})
	}
	if len(tmpl.DNSNames) > 0 || len(tmpl.IPAddresses) > 0 {
		// RFC 5280 4.2.1.6: critical if the subject is empty.
		ext(oidExtSubjectAltName, string(subject) == "\x30\x00", func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, n := range tmpl.DNSNames {
					b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
				}
				for _, ip := range tmpl.IPAddresses {
					if v4 := ip.To4(); v4 != nil {
						ip = v4
					}
					b.AddASN1(cbasn1.Tag(7).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(ip) })
				}
			})
		})
	}
	for _, e := range tmpl.ExtraExtensions {
		ext(e.Id, e.Critical, func(b *cryptobyte.Builder) { b.AddBytes(e.Value) })
	}
}

// addKeyUsage adds ku as the KeyUsage BIT STRING: bit 0 (digitalSignature)
// first, without trailing zero bits.
func addKeyUsage(b *cryptobyte.Builder, ku x509.KeyUsage) {
	var bits [2]byte
	for i := range 9 {
		if ku&(1<<uint(i)) != 0 {
			bits[i/8] |= 0x80 >> uint(i%8)
		}
	}
	n := 1
	if bits[1] != 0 {
		n = 2
	}
	last := bits[n-1]
	unused := 0
	for last&1 == 0 && unused < 8 {
		last >>= 1
		unused++
	}
	b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
		b.AddUint8(uint8(unused))
		b.AddBytes(bits[:n])
	})
}

// checkLeafDER is for tests: der must be a certificate the TLS CA signed.
func (a *Authority) checkLeafDER(der []byte) error {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	if err := c.CheckSignatureFrom(a.tlsCert); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	return nil
}
