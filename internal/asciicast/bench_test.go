package asciicast

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// benchChunks are 4 KiB PTY reads of different kinds of bulk output.
func benchChunks() map[string][]byte {
	cut := func(s string) []byte {
		for len(s) < 4096 {
			s += s
		}
		return []byte(s[:4096]) // may split a UTF-8 sequence, as PTY reads do
	}
	return map[string][]byte{
		"ascii":  cut("drwxr-xr-x  2 alice staff  4096 Mar  1 12:00 src\r\n-rw-r--r--  1 alice staff   812 Mar  1 12:00 go.mod\r\n"),
		"colors": cut("\x1b[0m\x1b[01;34mbin\x1b[0m  \x1b[01;32mbuild.sh\x1b[0m  \x1b[01;36mlib\x1b[0m -> /usr/lib\r\n\x1b[38;5;208mWARN\x1b[0m disk \"var\" at 91%\r\n"),
		"utf8":   cut("ログ: 接続が確立されました — café naïve résumé ✓ 🚀\r\n"),
	}
}

// BenchmarkWriterOutput measures recording cost per 4 KiB output chunk.
// Compare its MB/s with the baselines in the same run: encoding/json (what
// the hand-written escaper replaces) and AES-GCM sealing of the same bytes
// (a stand-in for the SSH channel's own per-byte cost, which recording must
// stay well under).
func BenchmarkWriterOutput(b *testing.B) {
	for name, chunk := range benchChunks() {
		b.Run("writer/"+name, func(b *testing.B) {
			w, err := NewWriter(io.Discard, Header{Width: 80, Height: 24}, t0)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			now := t0
			for b.Loop() {
				now = now.Add(time.Millisecond)
				if err := w.Output(now, chunk); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("baseline-encoding-json/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			enc := json.NewEncoder(io.Discard)
			sec := 0.0
			for b.Loop() {
				sec += 0.001
				if err := enc.Encode([]any{sec, "o", string(chunk)}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("baseline-aes-gcm/"+name, func(b *testing.B) {
			block, err := aes.NewCipher(make([]byte, 16))
			if err != nil {
				b.Fatal(err)
			}
			aead, err := cipher.NewGCM(block)
			if err != nil {
				b.Fatal(err)
			}
			nonce := make([]byte, aead.NonceSize())
			dst := make([]byte, 0, len(chunk)+aead.Overhead())
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				dst = aead.Seal(dst[:0], nonce, chunk, nil)
			}
		})
	}
}

func BenchmarkReader(b *testing.B) {
	var sb strings.Builder
	w, err := NewWriter(&sb, Header{Width: 80, Height: 24}, t0)
	if err != nil {
		b.Fatal(err)
	}
	chunk := benchChunks()["colors"]
	for i := range 256 {
		if err := w.Output(at(float64(i)), chunk); err != nil {
			b.Fatal(err)
		}
	}
	rec := sb.String()
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewReader(strings.NewReader(rec))
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}
