package recording

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-sh/warden/internal/asciicast"
)

// Buffering between the session and the flusher.
const (
	// kickSize wakes the flusher to encode and write (not fsync) early.
	kickSize = 64 << 10
	// maxPending makes writers wait for the flusher (local disk and CPU
	// backpressure; never the network).
	maxPending = 8 << 20
	// lowStep is how much queued data the low-priority thread encodes,
	// writes and hashes before it yields. Go code holds one of the
	// runtime's Ps (GOMAXPROCS) while it runs, also while the OS has
	// descheduled its nice-19 thread for a busier one: one long step would
	// keep the sessions' goroutines from that P, on a two-core node half
	// of them, for as long as the thread waits for CPU. Yielding on a
	// locked thread hands the P back until the step's turn comes again.
	// BenchmarkRecording (on against off) is what this size was chosen by.
	lowStep = 16 << 10
)

// Raw event kinds queued for the flusher.
const (
	rawOutput byte = 'o'
	rawInput  byte = 'i'
	rawResize byte = 'r'
)

// rawHeaderLen is kind (1) + Unix nanoseconds (8) + data length (4).
const rawHeaderLen = 13

// rawDataLen is the data length of the queued event raw starts with.
func rawDataLen(raw []byte) int { return int(binary.LittleEndian.Uint32(raw[9:])) }

// SpoolRecording is one session's recording in the spool. Its methods are
// safe for concurrent use and cheap: they copy the event into memory with
// its time, and a background flusher encodes it as asciicast, writes,
// hashes and periodically fsyncs it. Nothing waits for the network.
type SpoolRecording struct {
	s           *Spool
	u           *upload
	f           *os.File
	recordInput bool

	mu      sync.Mutex
	drained *sync.Cond
	raw     []byte // queued events: rawHeaderLen header + data each
	spare   []byte
	err     error // sticky: a write or sync failure, or ErrClosed
	closed  bool  // Close called: no more events

	// lowFlushes counts flushes done at low CPU priority, lowSteps the
	// steps they took (for tests).
	lowFlushes, lowSteps atomic.Int64

	kick  chan struct{}
	syncs chan chan error
	stop  chan struct{}
	done  chan struct{}

	// Owned by whoever flushes: Start before the flusher runs, then the
	// flusher goroutine, then Close after it exited.
	cw      *asciicast.Writer
	out     []byte // encoded bytes not yet written to f
	hash    hash.Hash
	written int64
	synced  int64

	closeOnce sync.Once
	length    int64
	sum       string
	closeErr  error
}

func newSpoolRecording(s *Spool, u *upload, f *os.File) *SpoolRecording {
	r := &SpoolRecording{
		s: s, u: u, f: f, recordInput: u.st.RecordInput,
		kick:  make(chan struct{}, 1),
		syncs: make(chan chan error),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		hash:  sha256.New(),
	}
	r.drained = sync.NewCond(&r.mu)
	return r
}

// outSink collects the asciicast Writer's output for the flusher.
type outSink struct{ r *SpoolRecording }

func (k outSink) Write(p []byte) (int, error) {
	k.r.out = append(k.r.out, p...)
	return len(p), nil
}

// Output records terminal output.
func (r *SpoolRecording) Output(p []byte) error {
	return r.put(rawOutput, p, 0, 0)
}

// Input records typed input if the recording was started with recordInput;
// otherwise it does nothing.
func (r *SpoolRecording) Input(p []byte) error {
	if !r.recordInput {
		return nil
	}
	return r.put(rawInput, p, 0, 0)
}

// Resize records a terminal size change.
func (r *SpoolRecording) Resize(cols, rows int) error {
	if cols < asciicast.MinDimension || cols > asciicast.MaxDimension || rows < asciicast.MinDimension || rows > asciicast.MaxDimension {
		return fmt.Errorf("recording: resize to %dx%d out of range", cols, rows)
	}
	return r.put(rawResize, nil, cols, rows)
}

// put queues one event for the flusher.
func (r *SpoolRecording) put(kind byte, p []byte, cols, rows int) error {
	t := r.s.cfg.Now().UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if r.closed {
		return ErrClosed
	}
	var h [rawHeaderLen]byte
	h[0] = kind
	binary.LittleEndian.PutUint64(h[1:], uint64(t))
	if kind == rawResize {
		binary.LittleEndian.PutUint32(h[9:], 8)
		r.raw = append(r.raw, h[:]...)
		r.raw = binary.LittleEndian.AppendUint32(r.raw, uint32(cols))
		r.raw = binary.LittleEndian.AppendUint32(r.raw, uint32(rows))
	} else {
		binary.LittleEndian.PutUint32(h[9:], uint32(len(p)))
		r.raw = append(r.raw, h[:]...)
		r.raw = append(r.raw, p...)
	}
	if len(r.raw) >= kickSize {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	for len(r.raw) >= maxPending && r.err == nil {
		r.drained.Wait()
	}
	return r.err
}

// Sync encodes, writes and fsyncs everything recorded so far and offers it
// for upload.
func (r *SpoolRecording) Sync() error {
	reply := make(chan error, 1)
	select {
	case r.syncs <- reply:
		return <-reply
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.err != nil {
			return r.err
		}
		return ErrClosed
	}
}

// Close finalizes the recording: the last events are written and fsynced,
// the state file records the length and SHA-256 (of the asciicast file's
// bytes), and the uploader completes the recording on auth when it has sent
// everything. Close returns the length and hex SHA-256. Later calls return
// the same results.
func (r *SpoolRecording) Close() (int64, string, error) {
	r.closeOnce.Do(func() { r.length, r.sum, r.closeErr = r.close() })
	return r.length, r.sum, r.closeErr
}

func (r *SpoolRecording) close() (int64, string, error) {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	<-r.done
	defer r.s.forgetRecording(r)
	r.mu.Lock()
	ferr := r.err
	r.err = ErrClosed
	r.mu.Unlock()
	if errors.Is(ferr, ErrClosed) {
		// The spool closed under the session: the files stay behind and
		// are completed as interrupted by the next OpenSpool.
		return 0, "", fmt.Errorf("recording: %s: spool closed before the session ended", r.u.id)
	}
	cerr := r.f.Close()
	length, sum := r.written, hex.EncodeToString(r.hash.Sum(nil))
	// Even after a write error the file holds exactly `length` bytes with
	// this hash, so it is completed and uploaded like any other.
	if err := r.u.finish(length, sum); err != nil {
		return length, sum, err
	}
	if err := errors.Join(ferr, cerr); err != nil {
		return length, sum, fmt.Errorf("recording: %s: %w", r.u.id, err)
	}
	return length, sum, nil
}

// flushLoop is the recording's flusher goroutine.
func (r *SpoolRecording) flushLoop(ctx context.Context) {
	defer r.s.wg.Done()
	defer close(r.done)
	t := time.NewTicker(r.s.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-r.kick:
			_ = r.flush(false, false, true)
		case <-t.C:
			_ = r.flush(true, false, true)
		case reply := <-r.syncs:
			reply <- r.flush(true, false, false)
		case <-r.stop:
			_ = r.flush(true, true, false)
			return
		case <-ctx.Done():
			_ = r.flush(true, false, false)
			r.fail(ErrClosed)
			return
		}
	}
}

// flush encodes queued events, writes them to the file and, when sync is
// set, fsyncs it and offers the new bytes for upload. final also ends the
// asciicast stream (held-back partial UTF-8). background lets the encoding
// and writing run at low CPU priority (Spool.prio) unless the queue has
// backed up: then, and for the final flush and explicit Syncs, which
// someone waits for, it runs at normal priority here.
func (r *SpoolRecording) flush(sync, final, background bool) error {
	r.mu.Lock()
	raw := r.raw
	r.raw, r.spare = r.spare[:0], nil
	failed := r.err
	r.mu.Unlock()

	var err error
	if failed == nil {
		if p := r.s.prio; p != nil && background && len(raw) > 0 && len(raw) < maxPending/2 {
			r.lowFlushes.Add(1)
			p.run(func() { err = r.writeSteps(raw, final) })
		} else {
			err = r.write(raw, final)
		}
	}
	r.mu.Lock()
	if cap(raw) <= 2*maxPending {
		r.spare = raw[:0]
	}
	r.drained.Broadcast()
	r.mu.Unlock()
	if err != nil {
		r.fail(err)
		return err
	}
	if failed != nil {
		return failed
	}
	if sync && r.written > r.synced {
		if err := r.f.Sync(); err != nil {
			err = fmt.Errorf("recording: sync %s: %w", r.u.id, err)
			r.fail(err)
			return err
		}
		r.synced = r.written
		r.u.advance(r.synced)
	}
	return nil
}

// writeSteps is write in steps of about lowStep bytes (whole events),
// yielding the P between them: for the low-priority thread.
func (r *SpoolRecording) writeSteps(raw []byte, final bool) error {
	for {
		n := 0
		for n < lowStep && n < len(raw) {
			n += rawHeaderLen + rawDataLen(raw[n:])
		}
		r.lowSteps.Add(1)
		last := n == len(raw)
		if err := r.write(raw[:n], final && last); err != nil || last {
			return err
		}
		raw = raw[n:]
		runtime.Gosched()
	}
}

// write encodes raw events and appends them to the file, hashing what was
// written. It touches only flusher-owned state, so it may run on another
// goroutine while the flusher waits.
func (r *SpoolRecording) write(raw []byte, final bool) error {
	err := r.encode(raw)
	if err == nil && final {
		err = r.cw.Close()
	}
	if err == nil && len(r.out) > 0 {
		var n int
		n, err = r.f.Write(r.out)
		r.hash.Write(r.out[:n])
		r.written += int64(n)
		if err != nil {
			err = fmt.Errorf("recording: write %s: %w", r.u.id, err)
		}
	}
	r.out = r.out[:0]
	if cap(r.out) > 2*maxPending {
		r.out = nil
	}
	return err
}

// encode turns queued raw events into asciicast lines in r.out.
func (r *SpoolRecording) encode(raw []byte) error {
	for len(raw) >= rawHeaderLen {
		kind := raw[0]
		t := time.Unix(0, int64(binary.LittleEndian.Uint64(raw[1:])))
		n := rawDataLen(raw)
		data := raw[rawHeaderLen : rawHeaderLen+n]
		raw = raw[rawHeaderLen+n:]
		var err error
		switch kind {
		case rawOutput:
			err = r.cw.Output(t, data)
		case rawInput:
			err = r.cw.Input(t, data)
		case rawResize:
			err = r.cw.Resize(t, int(binary.LittleEndian.Uint32(data)), int(binary.LittleEndian.Uint32(data[4:])))
		}
		if err != nil {
			return fmt.Errorf("recording: encode %s: %w", r.u.id, err)
		}
	}
	return nil
}

// fail makes err sticky and wakes writers waiting for room.
func (r *SpoolRecording) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
	r.drained.Broadcast()
}
