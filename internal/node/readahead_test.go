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
