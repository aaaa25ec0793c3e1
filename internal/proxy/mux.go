package proxy

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/quickack"
	"github.com/warden-sh/warden/internal/tunnel"
)

// Mux splits one listener by protocol: connections that start with the SSH
// banner ("SSH-") go to SSH, data connections (tunnel.DataMagic) to Data,
// everything else (TLS) to TLS. Both SSH clients
// and TLS clients speak first, so a short peek decides. Slow or silent
// clients are dropped after PeekTimeout.
type Mux struct {
	ln          net.Listener
	PeekTimeout time.Duration
	ssh, tls    *chanListener
	data        *chanListener
	closeOnce   sync.Once
}

// NewMux wraps ln.
func NewMux(ln net.Listener) *Mux {
	m := &Mux{ln: ln, PeekTimeout: 10 * time.Second}
	m.ssh = newChanListener(ln.Addr())
	m.tls = newChanListener(ln.Addr())
	m.data = newChanListener(ln.Addr())
	return m
}

// SSH returns the listener receiving SSH connections.
func (m *Mux) SSH() net.Listener { return m.ssh }

// Data returns the listener receiving data connections (see ServeData).
func (m *Mux) Data() net.Listener { return m.data }

// TLS returns the listener receiving all other connections.
func (m *Mux) TLS() net.Listener { return m.tls }

// Serve accepts until the listener is closed.
func (m *Mux) Serve() error {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			m.Close()
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go m.route(quickack.Wrap(c))
	}
}

func (m *Mux) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(m.PeekTimeout))
	br := bufio.NewReaderSize(c, 512)
	head, err := br.Peek(4)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	switch string(head) {
	case "SSH-":
		m.ssh.deliver(pc)
	case tunnel.DataMagic:
		m.data.deliver(pc)
	default:
		// TLS clients (browsers, kubectl, Go programs) turn Nagle's
		// algorithm off: no quick ACKs needed.
		pc.QuickAckOff()
		m.tls.deliver(pc)
	}
}

// Close closes the underlying listener and both children.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		err = m.ln.Close()
		m.ssh.Close()
		m.tls.Close()
		m.data.Close()
	})
	return err
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// QuickAckOff turns quick ACKs off on the connection (internal/quickack),
// if it has them.
func (c *peekedConn) QuickAckOff() {
	if q, ok := c.Conn.(interface{ QuickAckOff() }); ok {
		q.QuickAckOff()
	}
}

type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
