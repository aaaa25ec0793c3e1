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
	mu             sync.Mutex
	err            error
	once           sync.Once
	onClose        func(error)
}

// NewTap taps conn with protocol p. onClose, if set, runs once when the
// connection is closed, with the parse error if one ended it.
func NewTap(conn io.ReadWriteCloser, p Protocol, sink Sink, onClose func(err error)) *Tap {
	c, s := NewParsers(p, sink)
	return &Tap{conn: conn, client: c, server: s, onClose: onClose}
}

// Read reads the server's bytes.
func (t *Tap) Read(p []byte) (int, error) {
	n, err := t.conn.Read(p)
	if n > 0 {
		if _, perr := t.server.Write(p[:n]); perr != nil {
			t.fail(perr)
			return 0, perr
		}
	}
	return n, err
}

// Write parses the client's bytes, then writes them to the server.
func (t *Tap) Write(p []byte) (int, error) {
	if err := t.Err(); err != nil {
		return 0, err
	}
	if _, perr := t.client.Write(p); perr != nil {
		t.fail(perr)
		return 0, perr
	}
	return t.conn.Write(p)
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
