package node

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// readAheadMax bounds what readAheadCopy holds between a read and its write.
const readAheadMax = 256 << 10

// readAheadDirect is the most a read may bring for the reader to write it
// itself, when nothing else waits to be written: a keystroke's echo then
// goes out with no hand-off to the writing goroutine (a wake-up on each
// keystroke's way back).
const readAheadDirect = 1024

// Output beyond an echo is written in batches. A PTY hands out at most a
// few KiB per read (the line discipline's 4 KiB buffer), and the stages
// after the node (the recording, the SSH channel, the client or the web
// bridge, the page) are each woken once per write: a write per read costs
// every one of them a wake-up and a system call per few KiB, which is most
// of what streaming output costs. So what the reader reads is held until
// readAheadBatch bytes gathered or readAheadHold passed since the first of
// them (a read deadline on the PTY), whichever comes first: bulk output
// goes out in batches, and a burst (a command's output, a screen redraw)
// reaches the client at most readAheadHold later. An echo (a little
// output with nothing held or being written) is written at once, by the
// reader itself, unless output streams (the last hold ended by size: then
// a short read is only the reader catching up with the writing program).
// A source without read deadlines (a pipe in tests) is never held.
const (
	readAheadBatch = 64 << 10
	readAheadHold  = 2 * time.Millisecond
)

// readDeadliner is a source whose reads can be bounded in time (an
// *os.File registered with Go's poller, such as the PTY master).
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

// readAheadCopy copies src to dst like io.Copy, but keeps reading while a
// write is in progress: a PTY hands out a few KiB per read, and each write
// to the client (recording, SSH encryption, the tunnel) then overlaps the
// next reads instead of following them, and takes everything read so far
// at once. A little output that finds nothing pending and no write in
// progress (an echo) is written by the reading goroutine itself; more
// output from a source with read deadlines is written in batches (see
// readAheadBatch). It returns when src ends and everything read was
// written, or at the first write error; reading stops once readAheadMax
// bytes wait.
func readAheadCopy(dst io.Writer, src io.Reader) error {
	q := &readAhead{}
	q.cond = sync.NewCond(&q.mu)
	go q.fill(dst, src)
	return q.drain(dst)
}

type readAhead struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte
	// ready: pending is to be written now, whatever its size (else the
	// writer waits for readAheadBatch bytes: the reader is holding them).
	ready bool
	// writing: a write to dst is in progress (by drain, or by fill for a
	// little output); writes never overlap and keep the order of reads.
	writing  bool
	readErr  error // src ended (io.EOF or the read error)
	writeErr error // fill's own write failed
	stopped  bool  // a write failed: reading stops
}

func (q *readAhead) fill(dst io.Writer, src io.Reader) {
	chunk := make([]byte, 32<<10)
	dl, _ := src.(readDeadliner)
	holding := false   // a read deadline is set: what was read is held
	streaming := false // the last hold ended by size: output streams
	for {
		n, err := src.Read(chunk)
		expired := false
		if err != nil && holding && errors.Is(err, os.ErrDeadlineExceeded) {
			// Nothing more came within readAheadHold: release.
			err, expired, streaming = nil, true, false
		}
		q.mu.Lock()
		for n > 0 && len(q.pending)+n > readAheadMax && !q.stopped {
			q.cond.Wait()
		}
		if q.stopped {
			q.mu.Unlock()
			return
		}
		hold := false
		if n > 0 && n <= readAheadDirect && len(q.pending) == 0 && !q.writing && !streaming {
			q.writing = true
			q.mu.Unlock()
			_, werr := dst.Write(chunk[:n])
			q.mu.Lock()
			q.writing = false
			if werr != nil {
				q.writeErr, q.stopped = werr, true
				q.cond.Broadcast()
				q.mu.Unlock()
				return
			}
		} else {
			q.pending = append(q.pending, chunk[:n]...)
			full := len(q.pending) >= readAheadBatch
			hold = dl != nil && !expired && err == nil && !full
			if full && holding {
				streaming = true
			}
			if !hold && len(q.pending) > 0 {
				q.ready = true
			}
		}
		if err != nil {
			q.readErr = err
		}
		if !hold {
			q.cond.Broadcast()
		}
		q.mu.Unlock()
		if err != nil {
			return
		}
		switch {
		case hold && !holding:
			holding = dl.SetReadDeadline(time.Now().Add(readAheadHold)) == nil
			if !holding {
				// Not pollable after all: never hold.
				dl, streaming = nil, false
				q.release()
			}
		case !hold && holding:
			holding = false
			if dl.SetReadDeadline(time.Time{}) != nil {
				// Reads could fail with the old deadline: stop holding.
				dl, streaming = nil, false
			}
		}
	}
}

// release marks what is pending to be written now.
func (q *readAhead) release() {
	q.mu.Lock()
	if len(q.pending) > 0 {
		q.ready = true
		q.cond.Broadcast()
	}
	q.mu.Unlock()
}

func (q *readAhead) drain(dst io.Writer) error {
	var out []byte
	for {
		q.mu.Lock()
		for {
			if q.writeErr != nil {
				err := q.writeErr
				q.mu.Unlock()
				return err
			}
			if !q.writing {
				if len(q.pending) > 0 && (q.ready || len(q.pending) >= readAheadBatch || q.readErr != nil) {
					break
				}
				if len(q.pending) == 0 && q.readErr != nil {
					err := q.readErr
					q.mu.Unlock()
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
			}
			q.cond.Wait()
		}
		// Swap buffers: the reader goes on filling the one just written.
		out, q.pending = q.pending, out[:0]
		q.ready = false
		q.writing = true
		q.cond.Broadcast()
		q.mu.Unlock()
		_, err := dst.Write(out)
		q.mu.Lock()
		q.writing = false
		if err != nil {
			q.stopped = true
		}
		q.cond.Broadcast()
		q.mu.Unlock()
		if err != nil {
			return err
		}
	}
}
