package tunnel

import (
	"bufio"
	"net"
	"sync/atomic"
)

// ReadBuffer is the read buffer of a buffered tunnel connection: a few of
// the largest SSH packets (32 KiB of channel data each). The SSH library
// reads a connection through a buffer of 4 KiB, so a large packet took it
// two reads (two system calls); through this buffer one read takes what
// has arrived, often several packets.
const ReadBuffer = 64 << 10

// BufferedConn is a connection whose reads go through a buffer of
// ReadBuffer bytes once Buffer was called (before, they go straight to
// the connection, so that a connection that never needs it costs no
// buffer). Reads must come from one goroutine at a time (the SSH
// library's reader); Buffer may be called from any goroutine, at any
// time: nothing read before is lost, as the buffer starts empty.
type BufferedConn struct {
	net.Conn
	br atomic.Pointer[bufio.Reader]
}

// NewBufferedConn wraps c, not yet buffered.
func NewBufferedConn(c net.Conn) *BufferedConn { return &BufferedConn{Conn: c} }

// Buffer makes reads go through the buffer from now on.
func (c *BufferedConn) Buffer() {
	if c.br.Load() == nil {
		c.br.Store(bufio.NewReaderSize(c.Conn, ReadBuffer))
	}
}

func (c *BufferedConn) Read(p []byte) (int, error) {
	if br := c.br.Load(); br != nil {
		return br.Read(p)
	}
	return c.Conn.Read(p)
}

// QuickAckOff turns quick ACKs off on the connection underneath, if it
// has them (internal/quickack): they are for OpenSSH clients, which leave
// Nagle's algorithm on; Warden's agents (Go) turn it off, and a quick ACK
// costs a system call before every read.
func (c *BufferedConn) QuickAckOff() {
	if q, ok := c.Conn.(interface{ QuickAckOff() }); ok {
		q.QuickAckOff()
	}
}
