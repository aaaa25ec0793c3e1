package recording

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/asciicast"
)

// Buffering between the session and the flusher.
const (
	// kickSize wakes the flusher to write (not fsync) early.
	kickSize = 64 << 10
	// maxPending makes writers wait for the flusher (local disk
	// backpressure; never the network).
	maxPending = 8 << 20
)

// SpoolRecording is one session's recording in the spool. Its methods are
// safe for concurrent use and never wait for the network: events are
// encoded into memory and written, hashed and fsynced by a background
// flusher.
type SpoolRecording struct {
	s           *Spool
	u           *upload
	f           *os.File
	cw          *asciicast.Writer
	recordInput bool

	mu      sync.Mutex
	drained *sync.Cond
	buf     []byte // encoded events not yet written to f
	spare   []byte
	err     error // sticky: a write or sync failure, or ErrClosed

	kick  chan struct{}
	syncs chan chan error
	stop  chan struct{}
	done  chan struct{}

	// Owned by whoever flushes: Start before the flusher runs, then the
	// flusher goroutine, then Close after it exited.
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

// spoolSink receives the asciicast Writer's lines (one Write per line).
type spoolSink struct{ r *SpoolRecording }

func (k spoolSink) Write(p []byte) (int, error) {
	r := k.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	r.buf = append(r.buf, p...)
	if len(r.buf) >= kickSize {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	for len(r.buf) >= maxPending && r.err == nil {
		r.drained.Wait()
	}
	if r.err != nil {
		return 0, r.err
	}
	return len(p), nil
}

// Output records terminal output.
func (r *SpoolRecording) Output(p []byte) error {
	return r.cw.Output(r.s.cfg.Now(), p)
}

// Input records typed input if the recording was started with recordInput;
// otherwise it does nothing.
func (r *SpoolRecording) Input(p []byte) error {
	if !r.recordInput {
		return nil
	}
	return r.cw.Input(r.s.cfg.Now(), p)
}

// Resize records a terminal size change.
func (r *SpoolRecording) Resize(cols, rows int) error {
	return r.cw.Resize(r.s.cfg.Now(), cols, rows)
}

// Sync writes and fsyncs everything recorded so far and offers it for
// upload.
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
	werr := r.cw.Close()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
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
	if err := errors.Join(ferr, werr, cerr); err != nil {
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
			_ = r.flush(false)
		case <-t.C:
			_ = r.flush(true)
		case reply := <-r.syncs:
			reply <- r.flush(true)
		case <-r.stop:
			_ = r.flush(true)
			return
		case <-ctx.Done():
			_ = r.flush(true)
			r.fail(ErrClosed)
			return
		}
	}
}

// flush writes buffered events to the file and, when sync is set, fsyncs
// it and offers the new bytes for upload.
func (r *SpoolRecording) flush(sync bool) error {
	r.mu.Lock()
	data := r.buf
	r.buf, r.spare = r.spare[:0], nil
	failed := r.err
	r.mu.Unlock()

	var err error
	if len(data) > 0 && failed == nil {
		var n int
		n, err = r.f.Write(data)
		r.hash.Write(data[:n])
		r.written += int64(n)
	}
	r.mu.Lock()
	if cap(data) <= 2*maxPending {
		r.spare = data[:0]
	}
	r.drained.Broadcast()
	r.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("recording: write %s: %w", r.u.id, err)
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

// fail makes err sticky and wakes writers waiting for room.
func (r *SpoolRecording) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
	r.drained.Broadcast()
}
