// Package krl writes and reads OpenSSH key revocation lists (KRLs), the
// binary format of sshd's RevokedKeys and `ssh-keygen -k`/`-Q`
// (PROTOCOL.krl in OpenSSH). Warden writes only certificate sections:
// certificates revoked by serial (lists and ranges) and by key ID, per CA.
// golang.org/x/crypto/ssh has no KRL support.
package krl

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// magic starts every KRL ("SSHKRL\n\0").
const magic = "SSHKRL\n\x00"

const (
	formatVersion = 1

	sectionCertificates = 1
	// Other top-level sections (explicit keys, fingerprints, signatures,
	// extensions) are refused by Parse: Warden never writes them.

	certSerialList   = 0x20
	certSerialRange  = 0x21
	certSerialBitmap = 0x22
	certKeyID        = 0x23
)

// Limits on what Parse accepts.
const (
	// MaxSize bounds a KRL Parse reads (64 MiB: 8 million serials).
	MaxSize = 64 << 20
	// maxString bounds one string (a CA key, a comment, a key ID).
	maxString = 1 << 16
)

// KRL is a key revocation list.
type KRL struct {
	// Version increases each time the list changes.
	Version uint64
	// Generated is when the list was made (whole seconds).
	Generated time.Time
	Comment   string
	Certs     []CertSection
}

// CertSection revokes certificates signed by one CA (or, with a nil CA,
// by any CA).
type CertSection struct {
	CA ssh.PublicKey
	// Serials are revoked serial numbers (never 0: OpenSSH ignores serial
	// 0, the default of CAs that set none).
	Serials []uint64
	// Ranges are revoked inclusive serial ranges [lo, hi], 0 < lo <= hi.
	Ranges [][2]uint64
	// KeyIDs are revoked certificate key IDs.
	KeyIDs []string
}

// Marshal encodes the KRL. Serials and key IDs are written sorted and
// without duplicates (the canonical order OpenSSH writes); serial 0 and
// empty ranges are dropped.
func (k *KRL) Marshal() []byte {
	b, _ := k.marshal()
	return b
}

// MarshalDigest is Marshal, also returning the SHA-256 of the encoded
// sections: of what the KRL revokes, not of its version, generation time
// or comment. Equal digests, same revocations.
func (k *KRL) MarshalDigest() ([]byte, [32]byte) {
	b, at := k.marshal()
	return b, sha256.Sum256(b[at:])
}

// marshal encodes the KRL and returns where its sections start.
func (k *KRL) marshal() ([]byte, int) {
	sections := make([][]byte, len(k.Certs))
	size := len(magic) + 4 + 8 + 8 + 8 + 4 + 4 + len(k.Comment)
	for i := range k.Certs {
		sections[i] = k.Certs[i].marshal()
		size += 1 + 4 + len(sections[i])
	}
	b := make([]byte, 0, size)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint32(b, formatVersion)
	b = binary.BigEndian.AppendUint64(b, k.Version)
	gen := k.Generated.Unix()
	if gen < 0 {
		gen = 0
	}
	b = binary.BigEndian.AppendUint64(b, uint64(gen))
	b = binary.BigEndian.AppendUint64(b, 0) // flags
	b = appendString(b, nil)                // reserved
	b = appendString(b, []byte(k.Comment))
	at := len(b)
	for _, sec := range sections {
		b = append(b, sectionCertificates)
		b = appendString(b, sec)
	}
	return b, at
}

func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func (s *CertSection) marshal() []byte {
	var ca []byte
	if s.CA != nil {
		ca = s.CA.Marshal()
	}
	serials := make([]uint64, 0, len(s.Serials))
	for _, v := range s.Serials {
		if v != 0 {
			serials = append(serials, v)
		}
	}
	slices.Sort(serials)
	serials = slices.Compact(serials)
	ranges := make([][2]uint64, 0, len(s.Ranges))
	for _, r := range s.Ranges {
		if r[0] != 0 && r[0] <= r[1] {
			ranges = append(ranges, r)
		}
	}
	slices.SortFunc(ranges, func(a, b [2]uint64) int {
		if a[0] != b[0] {
			return cmpU64(a[0], b[0])
		}
		return cmpU64(a[1], b[1])
	})
	ranges = slices.Compact(ranges)
	ids := slices.Clone(s.KeyIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	idsLen := 0
	for _, id := range ids {
		idsLen += 4 + len(id)
	}
	b := make([]byte, 0, 4+len(ca)+4+(1+4+8*len(serials))+len(ranges)*(1+4+16)+(1+4+idsLen))
	b = appendString(b, ca)
	b = appendString(b, nil) // reserved
	if len(serials) > 0 {
		b = append(b, certSerialList)
		b = binary.BigEndian.AppendUint32(b, uint32(8*len(serials)))
		for _, v := range serials {
			b = binary.BigEndian.AppendUint64(b, v)
		}
	}
	for _, r := range ranges {
		b = append(b, certSerialRange)
		b = binary.BigEndian.AppendUint32(b, 16)
		b = binary.BigEndian.AppendUint64(b, r[0])
		b = binary.BigEndian.AppendUint64(b, r[1])
	}
	if len(ids) > 0 {
		b = append(b, certKeyID)
		b = binary.BigEndian.AppendUint32(b, uint32(idsLen))
		for _, id := range ids {
			b = appendString(b, []byte(id))
		}
	}
	return b
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Revoked reports whether the KRL revokes cert: by its key ID or serial,
// in a section for its signing CA or for any CA. (OpenSSH also checks the
// certified key and the CA key themselves; Warden's KRLs name neither.)
func (k *KRL) Revoked(cert *ssh.Certificate) bool {
	ca := cert.SignatureKey.Marshal()
	for _, s := range k.Certs {
		if s.CA != nil && !bytes.Equal(s.CA.Marshal(), ca) {
			continue
		}
		if slices.Contains(s.KeyIDs, cert.KeyId) {
			return true
		}
		if cert.Serial == 0 {
			continue
		}
		if slices.Contains(s.Serials, cert.Serial) {
			return true
		}
		for _, r := range s.Ranges {
			if r[0] <= cert.Serial && cert.Serial <= r[1] {
				return true
			}
		}
	}
	return false
}

// Parse decodes a KRL of certificate sections, as Marshal writes them
// (and OpenSSH's serial bitmaps). Anything else (explicit keys,
// fingerprints, signatures, extensions, trailing bytes) is an error: the
// parser is strict, and bounded by MaxSize.
func Parse(data []byte) (*KRL, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("krl: %d bytes, at most %d accepted", len(data), MaxSize)
	}
	r := reader{b: data}
	if m := r.bytes(len(magic)); r.err != nil || string(m) != magic {
		return nil, errors.New("krl: not a KRL (bad magic)")
	}
	if v := r.u32(); r.err == nil && v != formatVersion {
		return nil, fmt.Errorf("krl: format version %d is not supported", v)
	}
	k := &KRL{Version: r.u64()}
	gen := r.u64()
	flags := r.u64()
	r.str() // reserved
	k.Comment = string(r.str())
	if r.err != nil {
		return nil, fmt.Errorf("krl: header: %w", r.err)
	}
	if gen > 1<<62 {
		return nil, errors.New("krl: generation date out of range")
	}
	if flags != 0 {
		return nil, fmt.Errorf("krl: unknown flags %#x", flags)
	}
	k.Generated = time.Unix(int64(gen), 0).UTC()
	for r.len() > 0 {
		typ := r.byte()
		body := r.strN(MaxSize)
		if r.err != nil {
			return nil, fmt.Errorf("krl: section: %w", r.err)
		}
		if typ != sectionCertificates {
			return nil, fmt.Errorf("krl: section type %d is not supported", typ)
		}
		s, err := parseCertSection(body)
		if err != nil {
			return nil, err
		}
		k.Certs = append(k.Certs, s)
	}
	return k, nil
}

func parseCertSection(data []byte) (CertSection, error) {
	var s CertSection
	r := reader{b: data}
	caBlob := r.str()
	r.str() // reserved
	if r.err != nil {
		return s, fmt.Errorf("krl: certificate section: %w", r.err)
	}
	if len(caBlob) > 0 {
		ca, err := ssh.ParsePublicKey(caBlob)
		if err != nil {
			return s, fmt.Errorf("krl: certificate section CA key: %w", err)
		}
		if _, isCert := ca.(*ssh.Certificate); isCert {
			return s, errors.New("krl: certificate section CA key is a certificate")
		}
		s.CA = ca
	}
	for r.len() > 0 {
		typ := r.byte()
		body := r.strN(MaxSize)
		if r.err != nil {
			return s, fmt.Errorf("krl: certificate subsection: %w", r.err)
		}
		sub := reader{b: body}
		switch typ {
		case certSerialList:
			if len(body)%8 != 0 {
				return s, errors.New("krl: serial list of a length not a multiple of 8")
			}
			for sub.len() > 0 {
				v := sub.u64()
				if v == 0 {
					return s, errors.New("krl: serial 0 in a serial list")
				}
				s.Serials = append(s.Serials, v)
			}
		case certSerialRange:
			lo, hi := sub.u64(), sub.u64()
			if sub.err != nil || sub.len() != 0 {
				return s, errors.New("krl: malformed serial range")
			}
			if lo == 0 || lo > hi {
				return s, fmt.Errorf("krl: invalid serial range %d-%d", lo, hi)
			}
			s.Ranges = append(s.Ranges, [2]uint64{lo, hi})
		case certSerialBitmap:
			off := sub.u64()
			bits := sub.str() // mpint: big-endian, possibly with a leading 0
			if sub.err != nil || sub.len() != 0 {
				return s, errors.New("krl: malformed serial bitmap")
			}
			if len(bits) > 0 && bits[0]&0x80 != 0 {
				return s, errors.New("krl: negative serial bitmap")
			}
			for i := len(bits) - 1; i >= 0; i-- {
				for j := 0; j < 8; j++ {
					if bits[i]&(1<<j) == 0 {
						continue
					}
					n := uint64(len(bits)-1-i)*8 + uint64(j)
					v := off + n
					if v < off || v == 0 {
						return s, errors.New("krl: serial bitmap out of range")
					}
					if len(s.Serials) >= MaxSize/8 {
						return s, errors.New("krl: serial bitmap too large")
					}
					s.Serials = append(s.Serials, v)
				}
			}
		case certKeyID:
			for sub.len() > 0 {
				id := sub.str()
				if sub.err != nil {
					return s, errors.New("krl: malformed key ID list")
				}
				s.KeyIDs = append(s.KeyIDs, string(id))
			}
		default:
			return s, fmt.Errorf("krl: certificate subsection type %#x is not supported", typ)
		}
		if sub.err != nil {
			return s, fmt.Errorf("krl: certificate subsection %#x: %w", typ, sub.err)
		}
	}
	return s, nil
}

// reader reads SSH wire types; the first error sticks.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (r *reader) len() int { return len(r.b) }

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errShort
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte() byte {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *reader) u64() uint64 {
	b := r.bytes(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (r *reader) str() []byte { return r.strN(maxString) }

func (r *reader) strN(max int) []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if int64(n) > int64(max) {
		r.err = fmt.Errorf("string of %d bytes, at most %d accepted", n, max)
		return nil
	}
	return r.bytes(int(n))
}
