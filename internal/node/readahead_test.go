package node

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// slowWriter records each write and can fail after a number of them.
type slowWriter struct {
	buf    bytes.Buffer
	writes int
	failAt int
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.failAt > 0 && w.writes >= w.failAt {
		return 0, errors.New("peer gone")
	}
	return w.buf.Write(p)
}

func TestReadAheadCopyDeliversEverythingInOrder(t *testing.T) {
	src := make([]byte, 3<<20)
	for i := range src {
		src[i] = byte(i * 7)
	}
	var w slowWriter
	// One byte a read at first, then larger reads, ending with data and EOF together.
	r := iotest.DataErrReader(io.MultiReader(iotest.OneByteReader(bytes.NewReader(src[:100])), bytes.NewReader(src[100:])))
	if err := readAheadCopy(&w, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.buf.Bytes(), src) {
		t.Fatalf("copied %d bytes, differing from the %d read", w.buf.Len(), len(src))
	}
}

func TestReadAheadCopyReturnsReadAndWriteErrors(t *testing.T) {
	readErr := errors.New("EIO")
	var w slowWriter
	err := readAheadCopy(&w, io.MultiReader(bytes.NewReader([]byte("partial")), iotest.ErrReader(readErr)))
	if !errors.Is(err, readErr) || w.buf.String() != "partial" {
		t.Fatalf("got %v after %q, want the read error after the data", err, w.buf.String())
	}
	// A writer that fails stops the copy, even though the source never ends.
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		for {
			if _, err := pw.Write(make([]byte, 4096)); err != nil {
				return
			}
		}
	}()
	fw := &slowWriter{failAt: 3}
	if err := readAheadCopy(fw, pr); err == nil || err.Error() != "peer gone" {
		t.Fatalf("got %v, want the write error", err)
	}
	pr.Close()
}

// TestReadAheadCopySmallWrites: little reads that find nothing pending are
// written by the reader itself, in order, and a failure of such a write
// ends the copy with its error.
func TestReadAheadCopySmallWrites(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		for i := range 200 {
			if _, err := pw.Write([]byte{byte('a' + i%26)}); err != nil {
				return
			}
		}
		pw.Close()
	}()
	var w slowWriter
	if err := readAheadCopy(&w, pr); err != nil {
		t.Fatal(err)
	}
	if w.buf.Len() != 200 {
		t.Fatalf("copied %d bytes, want 200", w.buf.Len())
	}
	for i, c := range w.buf.Bytes() {
		if c != byte('a'+i%26) {
			t.Fatalf("byte %d is %q: out of order", i, c)
		}
	}

	pr2, pw2 := io.Pipe()
	defer pw2.Close()
	go func() {
		for {
			if _, err := pw2.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	if err := readAheadCopy(&slowWriter{failAt: 1}, pr2); err == nil || err.Error() != "peer gone" {
		t.Fatalf("got %v, want the write error", err)
	}
	pr2.Close()
}
