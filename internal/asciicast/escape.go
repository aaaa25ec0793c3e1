package asciicast

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// utf8Tail holds the first bytes of a UTF-8 sequence that a chunk ended in
// the middle of, so the next chunk of the same stream can complete it.
type utf8Tail struct {
	b [utf8.UTFMax]byte
	n int
}

const hexDigits = "0123456789abcdef"

// verbatim[b] reports whether ASCII byte b can be copied into a JSON string
// unchanged.
var verbatim = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// appendJSONData appends p to dst as the body of a JSON string (no quotes).
// Invalid UTF-8 bytes become U+FFFD, one per byte, like utf8.DecodeRune
// reports them. Unless final is set, an incomplete multi-byte sequence at the
// end of p is not written but saved in tail for the caller to prepend to the
// next chunk. U+2028 and U+2029 are escaped because JavaScript and some line
// splitters treat them as line breaks.
//
// Runs of bytes carried verbatim are found eight at a time (special8) and
// copied at once; only the bytes that need work (an escape, a multi-byte
// sequence to check) are looked at one by one. escape_ref_test.go holds
// the byte-at-a-time encoder this one must match exactly.
func appendJSONData(dst, p []byte, tail *utf8Tail, final bool) []byte {
	start := 0
	i := 0
	for i < len(p) {
		if i+8 <= len(p) {
			m := special8(binary.LittleEndian.Uint64(p[i:]))
			if m == 0 {
				i += 8
				continue
			}
			// The first byte of the word that needs work.
			i += bits.TrailingZeros64(m) >> 3
		} else if b := p[i]; b < utf8.RuneSelf && verbatim[b] {
			i++
			continue
		}
		b := p[i]
		if b < utf8.RuneSelf {
			dst = append(dst, p[start:i]...)
			switch b {
			case '"':
				dst = append(dst, '\\', '"')
			case '\\':
				dst = append(dst, '\\', '\\')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		// A run of multi-byte sequences (text in most scripts) is checked
		// rune by rune here, without going back to the word test for each.
		for i < len(p) && p[i] >= utf8.RuneSelf {
			if !final && len(p)-i < utf8.UTFMax && !utf8.FullRune(p[i:]) {
				dst = append(dst, p[start:i]...)
				tail.n = copy(tail.b[:], p[i:])
				return dst
			}
			r, size := utf8.DecodeRune(p[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				dst = append(dst, p[start:i]...)
				dst = append(dst, "\uFFFD"...)
			case r == '\u2028' || r == '\u2029':
				dst = append(dst, p[start:i]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			default:
				i += size
				continue
			}
			i += size
			start = i
		}
	}
	return append(dst, p[start:]...)
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special8 flags, with the high bit of each, the bytes of x (little
// endian: byte 0 is the lowest) that a JSON string does not carry
// verbatim: >= 0x80, < 0x20, '"' and '\\'. It is zero when there is none,
// and its lowest flag is exact (a borrow only moves a flag upwards, past
// the first byte that needs work), so bits.TrailingZeros64(m)/8 is that
// byte's index.
func special8(x uint64) uint64 {
	// (v - ones) & ^v & highs flags zero bytes of v, and
	// (x - n*ones) & ^x & highs bytes of x below n (< 0x80).
	const quote, backslash = '"' * ones, '\\' * ones
	lt := (x - 0x20*ones) & ^x
	q := x ^ quote
	bs := x ^ backslash
	return (x | lt | (q-ones)&^q | (bs-ones)&^bs) & highs
}

// appendSeconds appends micros as seconds with exactly six decimals.
func appendSeconds(dst []byte, micros int64) []byte {
	dst = strconv.AppendInt(dst, micros/1e6, 10)
	frac := micros % 1e6
	dst = append(dst, '.')
	for div := int64(1e5); div > 0; div /= 10 {
		dst = append(dst, byte('0'+frac/div%10))
	}
	return dst
}
