package kubestream

import (
	"io"
	"sync"
)

// Tap is an upgraded exec/attach connection to the server (the backend
// of a reverse proxy) whose bytes are parsed on their way: what is read
// from it is the server's direction, what is written to it the client's.
// Written bytes are parsed before they pass on. When a parser fails the
// connection is closed (the stream ends, nothing else) and Err reports
// why; Read and Write then fail.
type Tap struct {
	conn           io.ReadWriteCloser
	client, server Parser
	sink           Sink
	mu             sync.Mutex
	err            error
	once           sync.Once
	onClose        func(error)

	// wmu orders the client's writes and injected input (inject.go);
	// pending is input held until the client is between messages.
	wmu        sync.Mutex
	pending    [][]byte
	pendingLen int

	// omu orders what goes to the client: the server's bytes and
	// notices (notice.go). out is the client while WriteTo runs; rbuf
	// is notice bytes a Read has yet to return.
	omu  sync.Mutex
	out  io.Writer
	rbuf []byte
	// notices wait (under nmu) for a boundary in the server's bytes.
	nmu     sync.Mutex
	notices [][]byte
}

// NewTap taps conn with protocol p. onClose, if set, runs once when the
// connection is closed, with the parse error if one ended it.
func NewTap(conn io.ReadWriteCloser, p Protocol, sink Sink, onClose func(err error)) *Tap {
	c, s := NewParsers(p, sink)
	return &Tap{conn: conn, client: c, server: s, sink: sink, onClose: onClose}
}

// Read reads the server's bytes (and notices, between them).
func (t *Tap) Read(p []byte) (int, error) {
	t.omu.Lock()
	if len(t.rbuf) == 0 {
		t.rbuf = t.readNotices()
	}
	if len(t.rbuf) > 0 {
		n := copy(p, t.rbuf)
		t.rbuf = t.rbuf[n:]
		t.omu.Unlock()
		return n, nil
	}
	t.omu.Unlock()
	n, err := t.conn.Read(p)
	if n > 0 {
		t.omu.Lock()
		_, perr := t.server.Write(p[:n])
		t.omu.Unlock()
		if perr != nil {
			t.fail(perr)
			return 0, perr
		}
	}
	return n, err
}

// Write parses the client's bytes, then writes them to the server.
// While injected input is held (Inject), the bytes pass frame by frame,
// and the input goes in at the first point between messages.
func (t *Tap) Write(p []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if err := t.Err(); err != nil {
		return 0, err
	}
	in, _ := t.client.(injector)
	if len(t.pending) == 0 || in == nil {
		if _, perr := t.client.Write(p); perr != nil {
			t.fail(perr)
			return 0, perr
		}
		return t.conn.Write(p)
	}
	done := 0
	for done < len(p) {
		k := min(in.step(), len(p)-done)
		part := p[done : done+k]
		if _, perr := t.client.Write(part); perr != nil {
			t.fail(perr)
			return done, perr
		}
		n, err := t.conn.Write(part)
		done += n
		if err != nil {
			return done, err
		}
		if len(t.pending) > 0 && in.atBoundary() {
			if err := t.flushPending(in); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// Close closes the connection.
func (t *Tap) Close() error {
	err := t.conn.Close()
	t.once.Do(func() {
		if t.onClose != nil {
			t.onClose(t.Err())
		}
	})
	return err
}

// Err is the parse error that ended the stream, or nil.
func (t *Tap) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

func (t *Tap) fail(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.mu.Unlock()
	_ = t.Close()
}
