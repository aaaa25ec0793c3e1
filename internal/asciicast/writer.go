package asciicast

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Writer writes an asciicast v2 recording.
//
// A Writer is safe for concurrent use: a session typically records output
// from the PTY reader goroutine, input from the channel reader and resizes
// from the request handler. Event times are seconds since start with
// microsecond precision; a time earlier than the previous event's (possible
// when goroutines race to the lock, or with a non-monotonic clock) is
// clamped to it, so the file always reads back with non-decreasing times.
//
// Every event is written with a single Write call to the underlying writer
// and the Writer keeps no buffer of its own: to record into a file without
// a system call per PTY read, give it a bufio.Writer (wrapped around a
// HashingWriter, or wrapping one) and flush it on a timer and at the end.
// The first write error is sticky: it is returned by every later call.
//
// To know a finished recording's length and SHA-256, wrap the destination in
// a HashingWriter, or use Len for the length alone.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	start  time.Time
	last   int64 // micros of the last event written
	n      int64 // bytes written to w
	buf    []byte
	merge  []byte
	tails  [2]utf8Tail // pending incomplete UTF-8: output, input
	err    error
	closed bool
}

const (
	streamOutput = 0
	streamInput  = 1
)

// NewWriter validates h, writes it as the header line and returns a Writer
// whose event times count from start. A zero h.Version means Version and a
// zero h.Timestamp means start.Unix().
func NewWriter(w io.Writer, h Header, start time.Time) (*Writer, error) {
	if h.Version == 0 {
		h.Version = Version
	}
	if h.Timestamp == 0 {
		h.Timestamp = start.Unix()
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("asciicast: header: %w", err)
	}
	line, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("asciicast: encode header: %w", err)
	}
	line = append(line, '\n')
	cw := &Writer{w: w, start: start, buf: make([]byte, 0, 8<<10)}
	if err := cw.writeLine(line); err != nil {
		return nil, err
	}
	return cw, nil
}

// Output records terminal output. p may end in the middle of a UTF-8
// sequence; the incomplete bytes are held back and joined to the next
// Output call. A call that leaves nothing to write records no event.
func (w *Writer) Output(t time.Time, p []byte) error {
	return w.data(t, TypeOutput[0], streamOutput, p)
}

// Input records bytes typed by the user, with the same UTF-8 handling as
// Output but on a separate stream.
func (w *Writer) Input(t time.Time, p []byte) error {
	return w.data(t, TypeInput[0], streamInput, p)
}

// Resize records a terminal size change.
func (w *Writer) Resize(t time.Time, cols, rows int) error {
	if err := checkDimensions(cols, rows); err != nil {
		return fmt.Errorf("asciicast: resize: %w", err)
	}
	var data [24]byte
	d := strconv.AppendInt(data[:0], int64(cols), 10)
	d = append(d, 'x')
	d = strconv.AppendInt(d, int64(rows), 10)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.event(t, TypeResize[0], d, nil)
}

// Marker records a named marker (a chapter point for players). Labels
// longer than 64 KiB are cut.
func (w *Writer) Marker(t time.Time, label string) error {
	if len(label) > maxEventData {
		n := maxEventData
		for n > 0 && !utf8.RuneStart(label[n]) {
			n--
		}
		label = label[:n]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.event(t, TypeMarker[0], []byte(label), nil)
}

// Close flushes incomplete UTF-8 sequences still held back (as U+FFFD,
// stamped with the last event's time) and makes later calls fail with
// ErrClosed. It does not close the underlying writer.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err
	}
	defer func() { w.closed = true }()
	t := w.start.Add(time.Duration(w.last) * time.Microsecond)
	for s, typ := range [2]byte{TypeOutput[0], TypeInput[0]} {
		tail := &w.tails[s]
		if tail.n == 0 {
			continue
		}
		pending := tail.b[:tail.n]
		tail.n = 0
		if err := w.event(t, typ, pending, nil); err != nil {
			return err
		}
	}
	return w.err
}

// Len returns the number of bytes written to the underlying writer so far,
// header included.
func (w *Writer) Len() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// maxEventData is the most data bytes put in one event. Escaping can grow
// data sixfold, so lines stay well under DefaultMaxLineBytes and any Reader
// with default limits accepts what a Writer wrote.
const maxEventData = 64 << 10

func (w *Writer) data(t time.Time, typ byte, stream int, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		n := min(len(p), maxEventData)
		if err := w.chunk(t, typ, stream, p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

func (w *Writer) chunk(t time.Time, typ byte, stream int, p []byte) error {
	tail := &w.tails[stream]
	if tail.n > 0 {
		w.merge = append(append(w.merge[:0], tail.b[:tail.n]...), p...)
		tail.n = 0
		p = w.merge
	}
	return w.event(t, typ, p, tail)
}

// event writes one event line. A nil tail means data is final: nothing is
// held back. Callers hold w.mu.
func (w *Writer) event(t time.Time, typ byte, data []byte, tail *utf8Tail) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	micros := t.Sub(w.start).Microseconds()
	if micros < w.last {
		micros = w.last
	}
	b := append(w.buf[:0], '[')
	b = appendSeconds(b, micros)
	b = append(b, ", \""...)
	b = append(b, typ)
	b = append(b, "\", \""...)
	head := len(b)
	b = appendJSONData(b, data, tail, tail == nil)
	if len(b) == head && tail != nil {
		// Empty data, or all of it held back waiting for the rest of a
		// UTF-8 sequence: an empty output event would only add noise.
		w.buf = b
		return nil
	}
	b = append(b, "\"]\n"...)
	w.buf = b
	w.last = micros
	return w.writeLine(b)
}

func (w *Writer) writeLine(b []byte) error {
	n, err := w.w.Write(b)
	w.n += int64(n)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("asciicast: write: %w", err)
		return w.err
	}
	return nil
}

// HashingWriter passes writes through to another writer while counting the
// bytes and computing their SHA-256, which is how a finished recording is
// sealed with its length and digest. It is not safe for concurrent use on
// its own; as the destination of a Writer it is only called under the
// Writer's lock.
type HashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

// NewHashingWriter returns a HashingWriter writing to w.
func NewHashingWriter(w io.Writer) *HashingWriter {
	return &HashingWriter{w: w, h: sha256.New()}
}

// Write writes p to the underlying writer and hashes the bytes it accepted.
func (h *HashingWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// Len returns the number of bytes written.
func (h *HashingWriter) Len() int64 { return h.n }

// Sum returns the SHA-256 of the bytes written so far.
func (h *HashingWriter) Sum() [sha256.Size]byte {
	var s [sha256.Size]byte
	h.h.Sum(s[:0])
	return s
}

// SumHex returns Sum as lowercase hex.
func (h *HashingWriter) SumHex() string {
	s := h.Sum()
	return hex.EncodeToString(s[:])
}
