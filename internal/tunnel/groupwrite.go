package tunnel

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Group writes: the SSH library writes each packet (at most 32 KiB of
// channel data) with its own system call, under its own lock, so a bulk
// stream through an agent's tunnel costs a write per packet, and the
// goroutine that encrypts the next packet waits for the kernel meanwhile.
// A GroupWriteConn takes each Write into a buffer and returns; one flusher
// goroutine writes what has gathered, in one system call, while the next
// packets are encrypted. A lone small write (a keystroke's echo) goes out
// at once: the flusher is woken for it and finds nothing else. Writes wait
// once groupWriteMax bytes are pending (the peer reads slowly), so memory
// stays bounded and TCP's flow control still reaches the writer.

// groupWriteMax bounds the bytes a GroupWriteConn holds that the kernel
// has not taken yet.
const groupWriteMax = 256 << 10

// idleBuffer is the most buffer a GroupWriteConn keeps once it has
// nothing pending.
const idleBuffer = 64 << 10

// errGroupClosed is the error of a Write after Close.
var errGroupClosed = errors.New("tunnel: write on a closed connection")

// GroupWriteConn is a net.Conn whose writes are gathered and written by a
// flusher goroutine. A write error of the flusher is returned by the next
// Write (and every one after it); Close writes what is pending first (for
// at most closeFlushWait), so a last packet is not lost.
type GroupWriteConn struct {
	net.Conn

	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte
	spare   []byte
	err     error // the first write error, sticky
	closed  bool
	done    chan struct{} // the flusher has ended
}

// closeFlushWait bounds how long Close waits for pending bytes to be
// written: on a healthy connection they go at once; on a dead one waiting
// longer would only hold up a reconnect.
const closeFlushWait = time.Second

// NewGroupWriteConn wraps c and starts its flusher.
func NewGroupWriteConn(c net.Conn) *GroupWriteConn {
	g := &GroupWriteConn{Conn: c, done: make(chan struct{})}
	g.cond = sync.NewCond(&g.mu)
	go g.flush()
	return g
}

// Write copies p into the pending bytes and returns; it waits while
// groupWriteMax bytes are pending.
func (g *GroupWriteConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for g.err == nil && !g.closed && len(g.pending) >= groupWriteMax {
			g.cond.Wait()
		}
		if g.err != nil {
			return n, g.err
		}
		if g.closed {
			return n, errGroupClosed
		}
		k := min(len(p), groupWriteMax-len(g.pending))
		g.pending = append(g.pending, p[:k]...)
		n += k
		p = p[k:]
		g.cond.Broadcast()
	}
	return n, nil
}

// flush writes the pending bytes until the connection is closed and
// drained, or a write fails.
func (g *GroupWriteConn) flush() {
	defer close(g.done)
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		for len(g.pending) == 0 && !g.closed && g.err == nil {
			g.cond.Wait()
		}
		if g.err != nil || len(g.pending) == 0 {
			return // failed, or closed with nothing left
		}
		batch := g.pending
		g.pending = g.spare[:0]
		g.cond.Broadcast() // room for writers
		g.mu.Unlock()
		_, err := g.Conn.Write(batch)
		g.mu.Lock()
		if len(g.pending) == 0 && cap(batch) > idleBuffer {
			g.spare = nil // the stream went quiet: let a large buffer go
		} else {
			g.spare = batch[:0]
		}
		if err != nil {
			g.err = err
			g.cond.Broadcast()
			return
		}
	}
}

// Close writes what is pending (waiting at most closeFlushWait) and closes
// the connection.
func (g *GroupWriteConn) Close() error {
	g.mu.Lock()
	already := g.closed
	g.closed = true
	g.cond.Broadcast()
	g.mu.Unlock()
	if !already {
		select {
		case <-g.done:
		case <-time.After(closeFlushWait):
		}
	}
	return g.Conn.Close()
}
