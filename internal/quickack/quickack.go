// Package quickack wraps TCP connections so the kernel acknowledges data at
// once instead of delaying ACKs. The OpenSSH client leaves Nagle's algorithm
// on for non-interactive sessions; together with delayed ACKs that costs two
// ~40 ms stalls per SSH connection setup. Linux clears TCP_QUICKACK after
// use, so it is set again before every read.
package quickack

import (
	"net"
	"sync/atomic"
	"syscall"
)

// tcpQuickAck is TCP_QUICKACK (Linux).
const tcpQuickAck = 0xc

type conn struct {
	*net.TCPConn
	rc  syscall.RawConn
	off atomic.Bool
}

// Wrap returns c with quick ACKs, or c itself if it is not a TCP connection.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &conn{TCPConn: tc, rc: rc}
}

func (c *conn) Read(p []byte) (int, error) {
	if c.off.Load() {
		return c.TCPConn.Read(p)
	}
	_ = c.rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpQuickAck, 1) })
	return c.TCPConn.Read(p)
}

// QuickAckOff stops setting quick ACKs before reads: for a peer known to
// turn Nagle's algorithm off (TLS clients such as browsers and kubectl,
// Warden's own agents), where the extra system call before each read buys
// nothing.
func (c *conn) QuickAckOff() { c.off.Store(true) }

// Unwrap returns the TCP connection, for callers that hand the socket to
// the kernel (splice) and need no more reads of their own.
func (c *conn) Unwrap() net.Conn { return c.TCPConn }
