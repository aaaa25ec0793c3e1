package node

import (
	"errors"
	"io"
	"sync"
)

// readAheadMax bounds what readAheadCopy holds between a read and its write.
const readAheadMax = 256 << 10

// readAheadCopy copies src to dst like io.Copy, but keeps reading while a
// write is in progress: a PTY hands out a few KiB per read, and each write
// to the client (recording, SSH encryption, the tunnel) then overlaps the
// next reads instead of following them, and takes everything read so far
// at once. It returns when src ends and everything read was written, or
// at the first write error; reading stops once readAheadMax bytes wait.
func readAheadCopy(dst io.Writer, src io.Reader) error {
	q := &readAhead{}
	q.cond = sync.NewCond(&q.mu)
	go q.fill(src)
	return q.drain(dst)
}

type readAhead struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte
	readErr error // src ended (io.EOF or the read error)
	stopped bool  // the writer gave up: reading stops
}

func (q *readAhead) fill(src io.Reader) {
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
		q.pending = append(q.pending, chunk[:n]...)
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
		for len(q.pending) == 0 && q.readErr == nil {
			q.cond.Wait()
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
		q.cond.Broadcast()
		q.mu.Unlock()
		if _, err := dst.Write(out); err != nil {
			q.mu.Lock()
			q.stopped = true
			q.cond.Broadcast()
			q.mu.Unlock()
			return err
		}
	}
}
