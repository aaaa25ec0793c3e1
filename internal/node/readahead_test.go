package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/warden-sh/warden/internal/patience"
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

// streamReader hands out data in PTY-sized reads that never wait, then
// holds its reads until their deadline (output that went quiet), and ends
// only once released: what it read must reach the writer before it ends.
type streamReader struct {
	data     []byte
	mu       sync.Mutex
	deadline time.Time
	release  chan struct{}
}

func (r *streamReader) SetReadDeadline(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deadline = t
	return nil
}

func (r *streamReader) Read(p []byte) (int, error) {
	if len(r.data) > 0 {
		n := copy(p[:min(len(p), 4095)], r.data)
		r.data = r.data[n:]
		return n, nil
	}
	r.mu.Lock()
	d := r.deadline
	r.mu.Unlock()
	if !d.IsZero() {
		// A blocked read ends at its deadline (as the poller ends it).
		time.Sleep(time.Until(d))
		return 0, os.ErrDeadlineExceeded
	}
	<-r.release
	return 0, io.EOF
}

// sizesWriter records the size of each write.
type sizesWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	sizes []int
}

func (w *sizesWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sizes = append(w.sizes, len(p))
	return w.buf.Write(p)
}

func (w *sizesWriter) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Len()
}

// TestReadAheadCopyBatchesStreamingOutput: from a source with read
// deadlines, streaming output goes out in writes of at least
// readAheadBatch bytes (not one per read), and the rest, held when the
// output goes quiet, is written when the hold ends, before the source
// ends.
func TestReadAheadCopyBatchesStreamingOutput(t *testing.T) {
	src := make([]byte, 1<<20+12345)
	for i := range src {
		src[i] = byte(i * 13)
	}
	r := &streamReader{data: src, release: make(chan struct{})}
	var w sizesWriter
	done := make(chan error, 1)
	go func() { done <- readAheadCopy(&w, r) }()
	// Everything arrives while the source is still open: the last,
	// partial batch was released by the hold's deadline.
	if err := patience.Retry(t, func() error {
		if n := w.len(); n != len(src) {
			return fmt.Errorf("%d of %d bytes written while the source is open", n, len(src))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	close(r.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.buf.Bytes(), src) {
		t.Fatal("the bytes written differ from those read")
	}
	for i, n := range w.sizes[:len(w.sizes)-1] {
		if n < readAheadBatch {
			t.Fatalf("write %d of %d has %d bytes, want batches of at least %d (sizes %v)", i, len(w.sizes), n, readAheadBatch, w.sizes)
		}
	}
}
