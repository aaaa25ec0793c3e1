package web

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/asciicast"
)

// TestBuildIndex: the index has a point about every indexStep bytes, each
// at the start of an event line with that line's time, and the duration.
func TestBuildIndex(t *testing.T) {
	var buf bytes.Buffer
	start := time.Unix(1700000000, 0)
	w, err := asciicast.NewWriter(&buf, asciicast.Header{Version: 2, Width: 100, Height: 30}, start)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		if err := w.Output(start.Add(time.Duration(i)*time.Millisecond), []byte(fmt.Sprintf("line %d %s\r\n", i, strings.Repeat("x", 20)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	ix, err := buildIndex(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	checkIndex(t, ix, data)
}

// TestProbeIndex: a large recording's index, made of probes, has points at
// line starts with their times, about every step, and the full duration.
func TestProbeIndex(t *testing.T) {
	var buf bytes.Buffer
	start := time.Unix(1700000000, 0)
	w, err := asciicast.NewWriter(&buf, asciicast.Header{Version: 2, Width: 100, Height: 30}, start)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		// Some lines longer than a probe: those probes find no point.
		n := 20
		if i%5000 == 7 {
			n = 3 * probeSize
		}
		if err := w.Output(start.Add(time.Duration(i)*time.Millisecond), []byte(fmt.Sprintf("line %d %s\r\n", i, strings.Repeat("x", n)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	ix, err := probeIndex(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	full, err := scanIndex(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if ix.Duration != full.Duration {
		t.Fatalf("duration %v, the full pass says %v", ix.Duration, full.Duration)
	}
	checkIndex(t, ix, data)
	for i := 1; i < len(ix.Offsets); i++ {
		if ix.Times[i] < ix.Times[i-1] || ix.Offsets[i] <= ix.Offsets[i-1] || ix.Offsets[i]-ix.Offsets[i-1] > 2*indexStep+probeSize {
			t.Fatalf("points %d and %d: %v@%d, %v@%d", i-1, i, ix.Times[i-1], ix.Offsets[i-1], ix.Times[i], ix.Offsets[i])
		}
	}
}

func checkIndex(t *testing.T, ix *recIndex, data []byte) {
	t.Helper()
	if ix.Width != 100 || ix.Height != 30 || ix.Length != int64(len(data)) {
		t.Fatalf("index header %+v", ix)
	}
	if ix.Duration < 19.9 || ix.Duration > 20 {
		t.Fatalf("duration %v, want 19.999", ix.Duration)
	}
	if want := len(data) / indexStep; len(ix.Offsets) < want || len(ix.Offsets) > want+2 {
		t.Fatalf("%d points for %d bytes", len(ix.Offsets), len(data))
	}
	for i, off := range ix.Offsets {
		if off > 0 && data[off-1] != '\n' {
			t.Fatalf("point %d at %d is not a line start", i, off)
		}
		var tm float64
		if _, err := fmt.Sscanf(string(data[off:off+20]), "[%f,", &tm); err != nil || tm != ix.Times[i] {
			t.Fatalf("point %d: time %v, line %q", i, ix.Times[i], data[off:off+20])
		}
	}
}

func TestSingleRange(t *testing.T) {
	for _, c := range []struct {
		h          string
		start, end int64
		ok         bool
	}{
		{"bytes=0-99", 0, 99, true},
		{"bytes=500-", 500, 999, true},
		{"bytes=900-5000", 900, 999, true},
		{"bytes=1000-", 0, 0, false}, // past the end
		{"bytes=5-1", 0, 0, false},
		{"bytes=0-1,5-9", 0, 0, false},
		{"bytes=-100", 0, 0, false}, // a suffix range: checked as it is read
		{"items=0-1", 0, 0, false},
		{"", 0, 0, false},
	} {
		start, end, ok := singleRange(c.h, 1000)
		if start != c.start || end != c.end || ok != c.ok {
			t.Errorf("%q: %d-%d %v, want %d-%d %v", c.h, start, end, ok, c.start, c.end, c.ok)
		}
	}
}
