package kubeagent

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// withDeadlines gives a tunnel channel's connection working read
// deadlines, as net/http's server needs them: to hand over an upgraded
// connection (exec, attach, port-forward) it ends its pending background
// read with a read deadline in the past, which a channel cannot do (Hijack
// would wait for ever). One goroutine reads the channel into a buffer and
// hands it to Read, which also returns at the deadline without losing
// what the goroutine reads later. Writes go straight to the channel.
func withDeadlines(c net.Conn) net.Conn {
	d := &deadlineConn{Conn: c, chunks: make(chan []byte), consumed: make(chan struct{}),
		closed: make(chan struct{}), expired: make(chan struct{})}
	go d.readLoop()
	return d
}

// deadlineBuf is what one read of the channel takes (an SSH packet carries
// at most 32 KiB).
const deadlineBuf = 32 << 10

type deadlineConn struct {
	net.Conn
	// chunks carries what the reader read; it waits on consumed before it
	// reads again into the same buffer. readErr is set before chunks is
	// closed.
	chunks   chan []byte
	consumed chan struct{}
	readErr  error

	rmu  sync.Mutex // one Read at a time
	rest []byte     // unread part of the current chunk

	closed    chan struct{}
	closeOnce sync.Once

	dmu     sync.Mutex
	timer   *time.Timer
	expired chan struct{} // closed once the read deadline passed
}

func (d *deadlineConn) readLoop() {
	buf := make([]byte, deadlineBuf)
	for {
		n, err := d.Conn.Read(buf)
		if n > 0 {
			select {
			case d.chunks <- buf[:n]:
			case <-d.closed:
				return
			}
			select {
			case <-d.consumed:
			case <-d.closed:
				return
			}
		}
		if err != nil {
			d.readErr = err
			close(d.chunks)
			return
		}
	}
}

func (d *deadlineConn) Read(p []byte) (int, error) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if len(d.rest) == 0 {
		d.dmu.Lock()
		expired := d.expired
		d.dmu.Unlock()
		select {
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		default:
		}
		select {
		case b, ok := <-d.chunks:
			if !ok {
				if d.readErr == nil {
					return 0, io.EOF
				}
				return 0, d.readErr
			}
			d.rest = b
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-d.closed:
			return 0, net.ErrClosed
		}
	}
	n := copy(p, d.rest)
	d.rest = d.rest[n:]
	if len(d.rest) == 0 {
		select {
		case d.consumed <- struct{}{}: // the reader waits for exactly this
		case <-d.closed:
		}
	}
	return n, nil
}

func (d *deadlineConn) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return d.Conn.Close()
}

func (d *deadlineConn) SetDeadline(t time.Time) error { return d.SetReadDeadline(t) }

// SetWriteDeadline is not supported (the agent's server sets none).
func (d *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

func (d *deadlineConn) SetReadDeadline(t time.Time) error {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		// The timer fired (or is firing): its channel is closed or about
		// to be; the new deadline gets a fresh one.
		d.expired = make(chan struct{})
	}
	d.timer = nil
	select {
	case <-d.expired:
		d.expired = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return nil
	}
	if wait := time.Until(t); wait <= 0 {
		close(d.expired)
	} else {
		ch := d.expired
		d.timer = time.AfterFunc(wait, func() { close(ch) })
	}
	return nil
}

// copyBuffers are the reverse proxy's copy buffers, reused (every request
// would otherwise allocate 32 KiB of garbage).
var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, deadlineBuf)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != deadlineBuf {
		return
	}
	buf = buf[:deadlineBuf]
	b.p.Put(&buf)
}
