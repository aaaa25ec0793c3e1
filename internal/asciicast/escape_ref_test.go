package asciicast

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// appendJSONDataRef is the encoder appendJSONData replaced (eight plain
// bytes skipped at a time, everything else byte by byte), kept as the
// reference the faster one must match byte for byte: recordings written
// before and after are identical.
func appendJSONDataRef(dst, p []byte, tail *utf8Tail, final bool) []byte {
	start := 0
	i := 0
	for i < len(p) {
		// Skip eight plain ASCII bytes at a time, the common case; when a
		// word has something else, handle that word byte by byte.
		if i+8 <= len(p) && plain8Ref(binary.LittleEndian.Uint64(p[i:])) {
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

// plain8Ref reports whether all eight bytes of x are ASCII that JSON strings
// carry verbatim (the reference's word test).
func plain8Ref(x uint64) bool {
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

// hostilePieces are the building blocks of the differential tests' input:
// plain text, every kind of escape, valid UTF-8 of each length (U+2028 and
// U+2029 among them), and every kind of invalid UTF-8 (lone continuation
// bytes, overlong forms, surrogates, beyond U+10FFFF, truncated sequences,
// 0xFE/0xFF).
var hostilePieces = [][]byte{
	[]byte("plain text 0123456789 "), []byte("abcdefgh"), []byte("\r\n"), []byte("\t"),
	[]byte(`"`), []byte(`\`), []byte(`\"`), []byte("\x00"), []byte("\x1b[01;34m"), []byte("\x7f"), []byte("\x1f"),
	[]byte("é"), []byte("ログ"), []byte("🚀"), []byte("\u2028"), []byte("\u2029"), []byte("\u2027\u202a"),
	[]byte("\uFFFD"), []byte("\U0010FFFF"),
	{0x80}, {0xbf}, {0xc0, 0xaf}, {0xc1, 0xbf}, {0xe0, 0x80, 0xaf}, {0xed, 0xa0, 0x80}, {0xed, 0xbf, 0xbf},
	{0xf4, 0x90, 0x80, 0x80}, {0xf5, 0x80, 0x80, 0x80}, {0xf0, 0x8f, 0xbf, 0xbf}, {0xfe}, {0xff},
	{0xe2, 0x80}, {0xe2}, {0xf0, 0x9f, 0x9a}, {0xf0, 0x9f}, {0xf0}, {0xc3},
}

// hostileInput strings random pieces and random bytes together.
func hostileInput(rng *rand.Rand, maxLen int) []byte {
	var p []byte
	for len(p) < maxLen {
		if rng.IntN(4) == 0 {
			p = append(p, byte(rng.IntN(256)))
		} else {
			p = append(p, hostilePieces[rng.IntN(len(hostilePieces))]...)
		}
	}
	return p[:rng.IntN(maxLen+1)]
}

// checkSameAsRef compares appendJSONData with the reference on p, final
// or not, after a prefix already in dst: the output, and the bytes held
// back for the next chunk.
func checkSameAsRef(t *testing.T, p []byte) {
	t.Helper()
	for _, final := range []bool{false, true} {
		var tail, tailRef utf8Tail
		got := appendJSONData([]byte("prefix"), p, &tail, final)
		want := appendJSONDataRef([]byte("prefix"), p, &tailRef, final)
		if !bytes.Equal(got, want) || tail != tailRef {
			t.Fatalf("appendJSONData(%q, final=%v) = %q (tail %q), reference %q (tail %q)",
				p, final, got, tail.b[:tail.n], want, tailRef.b[:tailRef.n])
		}
	}
}

// TestAppendJSONDataMatchesReference: the fast encoder's output equals the
// reference's, byte for byte, on random hostile input of every length
// around the eight-byte word (and at every offset within a word), and on
// every single byte and byte pair.
func TestAppendJSONDataMatchesReference(t *testing.T) {
	t.Parallel()
	for b := range 256 {
		checkSameAsRef(t, []byte{byte(b)})
		for c := range 256 {
			checkSameAsRef(t, []byte{byte(b), byte(c)})
		}
		// Each byte at each position of a word, amid plain text.
		for pos := range 17 {
			p := []byte("abcdefghijklmnopq")
			p[pos] = byte(b)
			checkSameAsRef(t, p)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		checkSameAsRef(t, hostileInput(rng, 64))
	}
	for range 2000 {
		checkSameAsRef(t, hostileInput(rng, 4096))
	}
}

// TestWriterChunksMatchReference: a recording written through the Writer in
// random chunks (UTF-8 sequences split between them, as PTY reads split
// them) is the same file with either encoder.
func TestWriterChunksMatchReference(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		data := hostileInput(rng, 8192)
		var cuts []int
		for i := 0; i < len(data); i += 1 + rng.IntN(700) {
			cuts = append(cuts, i)
		}
		cuts = append(cuts, len(data))
		encode := func(enc func(dst, p []byte, tail *utf8Tail, final bool) []byte) []byte {
			var out []byte
			var tail utf8Tail
			for k := 1; k < len(cuts); k++ {
				p := append(append([]byte(nil), tail.b[:tail.n]...), data[cuts[k-1]:cuts[k]]...)
				tail.n = 0
				out = enc(out, p, &tail, false)
				out = append(out, '|')
			}
			return enc(out, tail.b[:tail.n], &utf8Tail{}, true)
		}
		if got, want := encode(appendJSONData), encode(appendJSONDataRef); !bytes.Equal(got, want) {
			t.Fatalf("chunked encoding differs:\n got %q\nwant %q", got, want)
		}
	}
}

// FuzzAppendJSONData: the fast encoder matches the reference on any input,
// and what it writes is valid UTF-8.
func FuzzAppendJSONData(f *testing.F) {
	for _, p := range hostilePieces {
		f.Add(p)
	}
	f.Add([]byte("drwxr-xr-x  2 alice staff  4096 Mar  1 12:00 src\r\n\x1b[0m\x1b[01;34mbin\x1b[0m ログ 🚀 \u2028"))
	f.Fuzz(func(t *testing.T, p []byte) {
		checkSameAsRef(t, p)
		var tail utf8Tail
		if out := appendJSONData(nil, p, &tail, true); !utf8.Valid(out) {
			t.Fatalf("invalid UTF-8 out of %q: %q", p, out)
		}
	})
}

// BenchmarkAppendJSONData compares the encoder with the reference on the
// kinds of bulk output of BenchmarkWriterOutput, plus the lines of
// `yes` that BenchmarkTerminalBulk records.
func BenchmarkAppendJSONData(b *testing.B) {
	chunks := benchChunks()
	yes := []byte{}
	for len(yes) < 4096 {
		yes = append(yes, "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"...)
	}
	chunks["yes"] = yes[:4096]
	for name, chunk := range chunks {
		for _, enc := range []struct {
			name string
			f    func(dst, p []byte, tail *utf8Tail, final bool) []byte
		}{{"fast", appendJSONData}, {"ref", appendJSONDataRef}} {
			b.Run(name+"/"+enc.name, func(b *testing.B) {
				b.SetBytes(int64(len(chunk)))
				dst := make([]byte, 0, 8*len(chunk))
				var tail utf8Tail
				for b.Loop() {
					dst = enc.f(dst[:0], chunk, &tail, false)
					tail.n = 0
				}
			})
		}
	}
}
