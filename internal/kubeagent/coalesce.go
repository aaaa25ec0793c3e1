package kubeagent

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// Reading a stream from the API server (exec, attach, logs -f, watches)
// in large pieces. A TLS connection's Read returns one record, at most
// 16 KiB, and each read went to the proxy as one packet on the tunnel (a
// packet costs the agent two writes and the proxy a read, whatever its
// size; the API server's records are often smaller still). So the TLS
// connection reads its socket through a buffer of rawBuffer bytes (one
// system call takes what has arrived), and coalescingConn's Read, after
// the read that waited for data, also takes the records already
// received, without waiting for more: with a read deadline in the past,
// the TLS connection returns at once when its buffers hold no complete
// record (the socket is not even read), keeping what it has (a timeout is
// not fatal to it). A 32 KiB copy buffer then goes to the proxy as one
// full packet, and output that comes in small pieces still goes on at
// once.

// rawBuffer is the read buffer under the TLS connection: two full
// records and their framing.
const rawBuffer = 40 << 10

// maxRecord is the largest TLS record's payload.
const maxRecord = 16 << 10

// minCoalesce is the least room left in a read's buffer worth taking more
// records into. The HTTP client reads responses through a 4 KiB buffer:
// those reads never try (nor need to); an upgraded stream's copy (32 KiB)
// does.
const minCoalesce = 4<<10 + 1

// longAgo is a read deadline that has passed.
var longAgo = time.Unix(1, 0)

type coalescingConn struct {
	*tls.Conn
	mu       sync.Mutex // the deadline, while Read lends it out
	deadline time.Time
}

// dialTLS dials the API server for transport (its DialTLSContext).
func dialTLS(cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := cfg.Clone()
		if c.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				raw.Close()
				return nil, err
			}
			c.ServerName = host
		}
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		tc := tls.Client(&bufferedConn{Conn: raw, br: bufio.NewReaderSize(raw, rawBuffer)}, c)
		if err := tc.HandshakeContext(hctx); err != nil {
			raw.Close()
			return nil, err
		}
		return &coalescingConn{Conn: tc}, nil
	}
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil || n == 0 || len(p)-n < minCoalesce {
		return n, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Conn.SetReadDeadline(longAgo) != nil {
		return n, nil
	}
	for len(p)-n >= minCoalesce {
		m, err := c.Conn.Read(p[n:])
		n += m
		if err != nil || m == 0 {
			// A timeout only says nothing more is buffered; any other
			// error comes back on the next read.
			break
		}
	}
	_ = c.Conn.SetReadDeadline(c.deadline)
	return n, nil
}

func (c *coalescingConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetReadDeadline(t)
}

func (c *coalescingConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

// bufferedConn reads a connection through a buffer.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.br.Read(p) }
