package asciicast

import (
	"encoding/binary"
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
func appendJSONData(dst, p []byte, tail *utf8Tail, final bool) []byte {
	start := 0
	i := 0
	for i < len(p) {
		// Skip eight plain ASCII bytes at a time, the common case; when a
		// word has something else, handle that word byte by byte.
		if i+8 <= len(p) && plain8(binary.LittleEndian.Uint64(p[i:])) {
			i += 8
			continue
		}
		for end := min(i+8, len(p)); i < end; {
			b := p[i]
			if b < utf8.RuneSelf {
				if verbatim[b] {
					i++
					continue
				}
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

// plain8 reports whether all eight bytes of x are ASCII that JSON strings
// carry verbatim: no byte >= 0x80, < 0x20, '"' or '\\'.
func plain8(x uint64) bool {
	if x&highs != 0 {
		return false
	}
	// With every byte < 0x80, (x - n*ones) & ^x & highs flags bytes < n,
	// and a zero byte of x^(c*ones) is a byte equal to c.
	const quote, backslash = '"' * ones, '\\' * ones
	lt := (x - 0x20*ones) & ^x
	q := x ^ quote
	bs := x ^ backslash
	return (lt|(q-ones)&^q|(bs-ones)&^bs)&highs == 0
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
