package asciicast

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/bits"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec float64) time.Time {
	return t0.Add(time.Duration(sec * float64(time.Second)))
}

func testHeader() Header {
	return Header{Width: 80, Height: 24, Env: map[string]string{"TERM": "xterm-256color", "SHELL": "/bin/bash"}, Title: "alice@web-1"}
}

// readAll reads every event of a recording, failing the test on error.
func readAll(t *testing.T, data []byte) (Header, []Event) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("NewReader: %v\n%s", err, data)
	}
	var evs []Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return r.Header(), evs
		}
		if err != nil {
			t.Fatalf("Next: %v\n%s", err, data)
		}
		evs = append(evs, ev)
	}
}

func TestWriterRoundTrip(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader(), t0)
	if err != nil {
		t.Fatal(err)
	}
	steps := []error{
		w.Output(at(0.1), []byte("\x1b[1;32malice@web-1\x1b[0m:~$ ")),
		w.Input(at(1.25), []byte("l")),
		w.Output(at(1.250001), []byte("l")),
		w.Input(at(1.5), []byte("s\r")),
		w.Output(at(1.6), []byte("s\r\nfile \"quoted\" back\\slash\ttab\r\n")),
		w.Resize(at(2), 120, 40),
		w.Marker(at(2.5), "after ls"),
		w.Output(at(3), []byte("naïve café 日本 🚀\r\n")),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Len() != int64(buf.Len()) {
		t.Errorf("Len = %d, wrote %d", w.Len(), buf.Len())
	}
	h, evs := readAll(t, buf.Bytes())
	wantH := testHeader()
	wantH.Version = 2
	wantH.Timestamp = t0.Unix()
	if diff := cmp.Diff(wantH, h); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	want := []Event{
		{0.1, "o", "\x1b[1;32malice@web-1\x1b[0m:~$ "},
		{1.25, "i", "l"},
		{1.250001, "o", "l"},
		{1.5, "i", "s\r"},
		{1.6, "o", "s\r\nfile \"quoted\" back\\slash\ttab\r\n"},
		{2, "r", "120x40"},
		{2.5, "m", "after ls"},
		{3, "o", "naïve café 日本 🚀\r\n"},
	}
	if diff := cmp.Diff(want, evs); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	first, _, _ := strings.Cut(buf.String(), "\n")
	var raw map[string]any
	if err := json.Unmarshal([]byte(first), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"duration", "idle_time_limit", "command", "theme"} {
		if _, ok := raw[k]; ok {
			t.Errorf("header has empty field %q: %s", k, first)
		}
	}
}

func TestWriterEventLineFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		do   func(w *Writer) error
		want string
	}{
		{"output", func(w *Writer) error { return w.Output(at(1.5), []byte("hi")) }, `[1.500000, "o", "hi"]`},
		{"micros", func(w *Writer) error { return w.Output(t0.Add(12345678*time.Microsecond+999), []byte("x")) }, `[12.345678, "o", "x"]`},
		{"before start clamps to zero", func(w *Writer) error { return w.Output(at(-3), []byte("x")) }, `[0.000000, "o", "x"]`},
		{"controls", func(w *Writer) error { return w.Output(at(0), []byte("\x00\x1b[0m\a\b\f\x7f")) }, `[0.000000, "o", "\u0000\u001b[0m\u0007\u0008\u000c` + "\x7f" + `"]`},
		{"quotes newlines", func(w *Writer) error { return w.Output(at(0), []byte("\"\\\r\n\t")) }, `[0.000000, "o", "\"\\\r\n\t"]`},
		{"line separators", func(w *Writer) error { return w.Output(at(0), []byte("a\u2028b\u2029c")) }, `[0.000000, "o", "a\u2028b\u2029c"]`},
		{"html stays raw", func(w *Writer) error { return w.Output(at(0), []byte("<a&b>")) }, `[0.000000, "o", "<a&b>"]`},
		{"input", func(w *Writer) error { return w.Input(at(2), []byte("\x7f")) }, "[2.000000, \"i\", \"\x7f\"]"},
		{"resize", func(w *Writer) error { return w.Resize(at(2), 132, 43) }, `[2.000000, "r", "132x43"]`},
		{"marker", func(w *Writer) error { return w.Marker(at(2), "sudo \"x\"") }, `[2.000000, "m", "sudo \"x\""]`},
		{"empty marker", func(w *Writer) error { return w.Marker(at(2), "") }, `[2.000000, "m", ""]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, testHeader(), t0)
			if err != nil {
				t.Fatal(err)
			}
			buf.Reset()
			if err := tt.do(w); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want+"\n" {
				t.Errorf("line\n got %q\nwant %q", got, tt.want+"\n")
			}
			var arr []any
			if err := json.Unmarshal(buf.Bytes(), &arr); err != nil {
				t.Errorf("not valid JSON: %v", err)
			}
		})
	}
}

func TestWriterUTF8(t *testing.T) {
	t.Parallel()
	type call struct {
		input bool
		p     string
	}
	out := func(p string) call { return call{false, p} }
	in := func(p string) call { return call{true, p} }
	tests := []struct {
		name  string
		calls []call
		want  []Event // times ignored
	}{
		{"é split 1|1", []call{out("caf\xc3"), out("\xa9!")}, []Event{{Type: "o", Data: "caf"}, {Type: "o", Data: "é!"}}},
		{"é alone split", []call{out("\xc3"), out("\xa9")}, []Event{{Type: "o", Data: "é"}}},
		{"€ split 1|2", []call{out("\xe2"), out("\x82\xac")}, []Event{{Type: "o", Data: "€"}}},
		{"€ split 2|1", []call{out("x\xe2\x82"), out("\xac")}, []Event{{Type: "o", Data: "x"}, {Type: "o", Data: "€"}}},
		{"€ split 1|1|1", []call{out("\xe2"), out("\x82"), out("\xac")}, []Event{{Type: "o", Data: "€"}}},
		{"emoji split 3|1", []call{out("\xf0\x9f\x9a"), out("\x80 go")}, []Event{{Type: "o", Data: "🚀 go"}}},
		{"invalid byte", []call{out("a\xffb")}, []Event{{Type: "o", Data: "a\ufffdb"}}},
		{"invalid run", []call{out("\xc0\xaf\xfe")}, []Event{{Type: "o", Data: "\ufffd\ufffd\ufffd"}}},
		{"surrogate encoding", []call{out("\xed\xa0\x80")}, []Event{{Type: "o", Data: "\ufffd\ufffd\ufffd"}}},
		{"split never completed", []call{out("\xc3"), out("x")}, []Event{{Type: "o", Data: "\ufffdx"}}},
		{"truncated 3-byte then ascii", []call{out("\xe2\x82"), out("ab")}, []Event{{Type: "o", Data: "\ufffd\ufffdab"}}},
		{"tail flushed at close", []call{out("ok\xe2\x82")}, []Event{{Type: "o", Data: "ok"}, {Type: "o", Data: "\ufffd\ufffd"}}},
		{"streams independent", []call{out("\xc3"), in("\xc3"), in("\xa9"), out("\xa9")}, []Event{{Type: "i", Data: "é"}, {Type: "o", Data: "é"}}},
		{"empty output writes nothing", []call{out(""), out("a")}, []Event{{Type: "o", Data: "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, testHeader(), t0)
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range tt.calls {
				f := w.Output
				if c.input {
					f = w.Input
				}
				if err := f(at(float64(i)), []byte(c.p)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			_, evs := readAll(t, buf.Bytes())
			for i := range evs {
				evs[i].Time = 0
			}
			if diff := cmp.Diff(tt.want, evs); diff != "" {
				t.Errorf("events (-want +got):\n%s\nfile:\n%s", diff, buf.String())
			}
		})
	}
}

func TestWriterTimesNeverDecrease(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader(), t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range []float64{2, 1, 3, 2.5} {
		if err := w.Output(at(sec), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	_, evs := readAll(t, buf.Bytes())
	var got []float64
	for _, e := range evs {
		got = append(got, e.Time)
	}
	if diff := cmp.Diff([]float64{2, 2, 3, 3}, got); diff != "" {
		t.Errorf("times (-want +got):\n%s", diff)
	}
}

func TestWriterConcurrent(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader(), t0)
	if err != nil {
		t.Fatal(err)
	}
	const perG = 200
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range perG {
				ts := at(float64(i) / 100)
				var err error
				switch g {
				case 0:
					err = w.Output(ts, []byte("é\xe2"))
				case 1:
					err = w.Input(ts, []byte("k"))
				case 2:
					err = w.Resize(ts, 80+i%10, 24)
				default:
					err = w.Output(ts, []byte("\x82\xac"))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, evs := readAll(t, buf.Bytes())
	counts := map[string]int{}
	for _, e := range evs {
		counts[e.Type]++
	}
	if counts["i"] != perG || counts["r"] != perG || counts["o"] < perG {
		t.Errorf("event counts %v", counts)
	}
}

type failWriter struct {
	n   int // writes allowed
	err error
}

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	f.n--
	return len(p), nil
}

func TestWriterErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk full")
	if _, err := NewWriter(&failWriter{err: boom}, testHeader(), t0); !errors.Is(err, boom) {
		t.Errorf("header write error = %v, want %v", err, boom)
	}
	w, err := NewWriter(&failWriter{n: 2, err: boom}, testHeader(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Output(at(1), []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := w.Output(at(2), []byte("b")); !errors.Is(err, boom) {
		t.Errorf("write error = %v", err)
	}
	if err := w.Input(at(3), []byte("c")); !errors.Is(err, boom) {
		t.Errorf("error not sticky: %v", err)
	}

	w, err = NewWriter(io.Discard, testHeader(), t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range [][2]int{{0, 24}, {80, 0}, {10001, 24}, {80, -1}} {
		if err := w.Resize(at(1), tc[0], tc[1]); err == nil {
			t.Errorf("Resize(%d, %d) accepted", tc[0], tc[1])
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Output(at(1), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

func TestNewWriterValidatesHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    Header
	}{
		{"zero width", Header{Width: 0, Height: 24}},
		{"huge height", Header{Width: 80, Height: 10001}},
		{"version 1", Header{Version: 1, Width: 80, Height: 24}},
		{"negative timestamp", Header{Width: 80, Height: 24, Timestamp: -1}},
		{"negative idle", Header{Width: 80, Height: 24, IdleTimeLimit: -1}},
	}
	for _, tt := range tests {
		if _, err := NewWriter(io.Discard, tt.h, t0); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

func TestHashingWriter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	hw := NewHashingWriter(&buf)
	w, err := NewWriter(hw, testHeader(), t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := w.Output(at(float64(i)), []byte("line\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(buf.Bytes())
	if hw.Sum() != sum || hw.SumHex() != hex.EncodeToString(sum[:]) {
		t.Errorf("Sum = %s, want %x", hw.SumHex(), sum)
	}
	if hw.Len() != int64(buf.Len()) || w.Len() != hw.Len() {
		t.Errorf("Len: hashing %d, writer %d, buffer %d", hw.Len(), w.Len(), buf.Len())
	}
}

// TestSpecial8: every byte value at every position of a word, amid plain
// bytes and behind a second special one: special8 flags exactly the
// bytes JSON strings do not carry verbatim, and its lowest flag is the
// first of them.
func TestSpecial8(t *testing.T) {
	t.Parallel()
	special := func(b int) bool { return !(b >= 0x20 && b < 0x80 && b != '"' && b != '\\') }
	word := func(w []byte) uint64 {
		x := uint64(0)
		for i := 7; i >= 0; i-- {
			x = x<<8 | uint64(w[i])
		}
		return x
	}
	for b := range 256 {
		for pos := range 8 {
			w := []byte("abcdefgh")
			w[pos] = byte(b)
			m := special8(word(w))
			if got := m != 0; got != special(b) {
				t.Fatalf("special8 with byte %#x at %d = %#x, want flagged %v", b, pos, m, special(b))
			}
			if m != 0 && bits.TrailingZeros64(m)>>3 != pos {
				t.Fatalf("special8 with byte %#x at %d: first flag at byte %d", b, pos, bits.TrailingZeros64(m)>>3)
			}
			for c := range 256 {
				// A second byte above: the first flag stays exact.
				for above := pos + 1; above < 8; above++ {
					w2 := append([]byte(nil), w...)
					w2[above] = byte(c)
					m := special8(word(w2))
					first := -1
					for i, v := range w2 {
						if special(int(v)) {
							first = i
							break
						}
					}
					if (m == 0) != (first < 0) || m != 0 && bits.TrailingZeros64(m)>>3 != first {
						t.Fatalf("special8(%q) = %#x, first special byte %d", w2, m, first)
					}
				}
			}
		}
	}
}

func TestWriterSplitsHugeWrites(t *testing.T) {
	t.Parallel()
	// One huge write of bytes that escape sixfold, with a UTF-8 sequence
	// straddling the split point, must read back with default limits.
	huge := bytes.Repeat([]byte{0x01}, 3*maxEventData)
	copy(huge[maxEventData-1:], "é")
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Output(at(1), huge); err != nil {
		t.Fatal(err)
	}
	if err := w.Marker(at(2), strings.Repeat("é", maxEventData)); err != nil {
		t.Fatal(err)
	}
	_, evs := readAll(t, buf.Bytes())
	var got strings.Builder
	for _, e := range evs {
		if e.Type == "o" {
			got.WriteString(e.Data)
		}
	}
	if got.String() != string(huge) {
		t.Errorf("huge output did not round trip (%d events)", len(evs))
	}
	if len(evs) < 4 {
		t.Errorf("got %d events, want output split into several", len(evs))
	}
	if m := evs[len(evs)-1]; m.Type != "m" || len(m.Data) != maxEventData || !strings.HasPrefix(m.Data, "éé") {
		t.Errorf("marker not cut to %d bytes of whole runes: %d bytes", maxEventData, len(m.Data))
	}
}
