package node

import (
	"errors"
	"io"
	"sync"
)

// readAheadMax bounds what readAheadCopy holds between a read and its write.
const readAheadMax = 256 << 10

// readAheadDirect is the most a read may bring for the reader to write it
// itself, when nothing else waits to be written: a keystroke's echo then
// goes out with no hand-off to the writing goroutine (a wake-up on each
// keystroke's way back).
const readAheadDirect = 1024

// readAheadCopy copies src to dst like io.Copy, but keeps reading while a
// write is in progress: a PTY hands out a few KiB per read, and each write
// to the client (recording, SSH encryption, the tunnel) then overlaps the
// next reads instead of following them, and takes everything read so far
// at once. A little output that finds nothing pending and no write in
// progress (an echo) is written by the reading goroutine itself. It
// returns when src ends and everything read was written, or at the first
// write error; reading stops once readAheadMax bytes wait.
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
	// writing: a write to dst is in progress (by drain, or by fill for a
	// little output); writes never overlap and keep the order of reads.
	writing  bool
	readErr  error // src ended (io.EOF or the read error)
	writeErr error // fill's own write failed
	stopped  bool  // a write failed: reading stops
}

func (q *readAhead) fill(dst io.Writer, src io.Reader) {
	chunk := make([]byte, 32<<10)
	for {
		n, err := src.Read(chunk)
		q.mu.Lock()
		for n > 0 && len(q.pending)+n > readAheadMax && !q.stopped {
			q.cond.Wait()
		}
		if q.stopped {
			q.mu.Unlock()
			return
		}
		if n > 0 && n <= readAheadDirect && len(q.pending) == 0 && !q.writing {
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
		}
		if err != nil {
			q.readErr = err
		}
		q.cond.Broadcast()
		q.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (q *readAhead) drain(dst io.Writer) error {
	var out []byte
	for {
		q.mu.Lock()
		for q.writing || len(q.pending) == 0 && q.readErr == nil && q.writeErr == nil {
			q.cond.Wait()
		}
		if q.writeErr != nil {
			err := q.writeErr
			q.mu.Unlock()
			return err
		}
		if len(q.pending) == 0 {
			err := q.readErr
			q.mu.Unlock()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		// Swap buffers: the reader goes on filling the one just written.
		out, q.pending = q.pending, out[:0]
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
