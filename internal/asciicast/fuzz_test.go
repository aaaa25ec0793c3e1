package asciicast

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzReader(f *testing.F) {
	f.Add([]byte(playRecording))
	f.Add([]byte(hdr + `[0.1, "r", "80x24"]` + "\n" + `[0.2, "m", "x"]`))
	f.Add([]byte(hdr + `[1e308, "o", "x"]` + "\n"))
	f.Add([]byte(hdr + "[0, \"o\", \"\\ud800\xff\"]\n"))
	f.Add([]byte(`{"version": 2, "width": 1, "height": 1, "env": null}` + "\n[]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReaderOptions(bytes.NewReader(data), ReaderOptions{MaxLineBytes: 4096, MaxHeaderBytes: 4096})
		if err != nil {
			return
		}
		last := 0.0
		for range 10000 {
			ev, err := r.Next()
			if err != nil {
				return
			}
			if ev.Time < last || ev.Time > MaxTime {
				t.Fatalf("time %v after %v", ev.Time, last)
			}
			last = ev.Time
			if !utf8.ValidString(ev.Data) {
				t.Fatalf("invalid UTF-8 data %q", ev.Data)
			}
		}
	})
}

// FuzzWriterRoundTrip writes arbitrary bytes in arbitrary chunks and checks
// the reader gets back exactly the bytes with each invalid byte replaced.
func FuzzWriterRoundTrip(f *testing.F) {
	f.Add([]byte("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80"), []byte{4, 1, 2})
	f.Add([]byte("\xff\xc3\x1b[0m\"\\\u2028"), []byte{1})
	f.Add([]byte("\xe2\x82"), []byte{})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, testHeader(), t0)
		if err != nil {
			t.Fatal(err)
		}
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(int(cuts[i]), n)
			}
			if err := w.Output(at(float64(i)), rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		for {
			ev, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, buf.Bytes())
			}
			got.WriteString(ev.Data)
		}
		if want := replaceInvalid(data); got.String() != want {
			t.Fatalf("round trip of %q\n got %q\nwant %q", data, got.String(), want)
		}
	})
}

// replaceInvalid is the reference: every byte utf8.DecodeRune rejects
// becomes U+FFFD.
func replaceInvalid(p []byte) string {
	var b strings.Builder
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		b.WriteRune(r)
		p = p[size:]
	}
	return b.String()
}

func FuzzStripANSI(f *testing.F) {
	f.Add("\x1b[1;31mred\x1b[0m")
	f.Add("\x1b]0;t\a\x1bP\x1b\\\u009b1m\x1b(B")
	f.Add("a\x1b")
	f.Fuzz(func(t *testing.T, s string) {
		got := StripANSI(s)
		if strings.ContainsAny(got, "\x1b\a\u009b") {
			t.Fatalf("StripANSI(%q) = %q still has escapes", s, got)
		}
		if again := StripANSI(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, got, again)
		}
		if len(got) > len(s) && utf8.ValidString(s) {
			t.Fatalf("output longer than input: %q -> %q", s, got)
		}
	})
}

func FuzzSearch(f *testing.F) {
	f.Add("l\x1b[1ms\r\n", "x\x7fls\r", "LS", 0)
	f.Add("\x1b[999999999C\x1b[999999999@x\x1b[5P\b\b\t", "\x17\x15\x03", "x", 1)
	f.Add(strings.Repeat("a", 5000), "", "aaa", 3)
	f.Fuzz(func(t *testing.T, out, in, text string, limit int) {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, testHeader(), t0)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Output(at(1), []byte(out)); err != nil {
			t.Fatal(err)
		}
		if err := w.Input(at(2), []byte(in)); err != nil {
			t.Fatal(err)
		}
		if err := w.Output(at(3), []byte(out)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		matches, err := Search(r, text, limit%8)
		if text == "" {
			if err == nil {
				t.Fatal("empty text accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if limit%8 > 0 && len(matches) > limit%8 {
			t.Fatalf("%d matches over limit %d", len(matches), limit%8)
		}
		for _, m := range matches {
			if utf8.RuneCountInString(m.Line) > MaxMatchLine {
				t.Fatalf("line too long: %d runes", utf8.RuneCountInString(m.Line))
			}
			if m.Type != TypeOutput && m.Type != TypeInput {
				t.Fatalf("type %q", m.Type)
			}
		}
	})
}
