package kubestream

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
)

// Notices are short lines for the client's terminal (a user joined or
// left the session) written into the server's direction as stdout, in
// the client's own protocol: an unmasked WebSocket message on channel 1
// (text and base64 in the base64 variants), or a SPDY data frame on the
// stream the client opened for stdout, once the server has replied to it.
// Like a peer's input they go between two of the server's frames, never
// inside one; they are reported to the sink as stdout (a recording has
// them, observers see them).
//
// A notice is written at once while the relay copies through WriteTo
// (httputil.ReverseProxy does, through io.Copy) and the server's bytes so
// far end between messages; otherwise it waits for the end of the frame
// in progress. A relay that reads with Read gets notices at its next read
// that ends between messages.

// ErrNoStdout is returned for a notice when the session has no stdout to
// write it to (none opened, or the server ended it).
var ErrNoStdout = errors.New("kubestream: the session's stdout is closed")

const (
	// MaxNotice bounds one notice.
	MaxNotice = 1024
	// maxNotices bounds the notices waiting for a boundary; more are
	// dropped.
	maxNotices = 16
	// relayBuffer is WriteTo's read size (io.Copy's).
	relayBuffer = 32 << 10
)

// outputter is the server-direction parser's side of notices.
type outputter interface {
	atBoundary() bool
	step() int
	// stdoutFrame frames p as stdout from the server, or fails with
	// ErrNoStdout.
	stdoutFrame(p []byte) ([]byte, error)
}

func (w *wsParser) stdoutFrame(p []byte) ([]byte, error) {
	if w.closed {
		return nil, ErrNoStdout
	}
	var payload []byte
	op := byte(0x80 | opBinary)
	if w.proto.Base64 {
		op = 0x80 | opText
		payload = make([]byte, 1+base64.StdEncoding.EncodedLen(len(p)))
		payload[0] = '1'
		base64.StdEncoding.Encode(payload[1:], p)
	} else {
		payload = append([]byte{byte(Stdout)}, p...)
	}
	f := []byte{op}
	switch n := len(payload); {
	case n < 126:
		f = append(f, byte(n))
	case n <= 0xffff:
		f = append(f, 126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	return append(f, payload...), nil
}

func (s *spdyParser) stdoutFrame(p []byte) ([]byte, error) {
	id, ok := s.streams.stdout()
	if !ok {
		return nil, ErrNoStdout
	}
	f := binary.BigEndian.AppendUint32(nil, id&0x7fffffff)
	n := len(p)
	f = append(f, 0, byte(n>>16), byte(n>>8), byte(n))
	return append(f, p...), nil
}

// stdout is the stream the client opened for stdout, once the server
// replied to it and while the server may still write on it.
func (s *spdyStreams) stdout() (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.types {
		if t == Stdout && s.replied[id] && !s.outDone[id] {
			return id, true
		}
	}
	return 0, false
}

// serverEvent notes the server's reply to a stream (reply) or the end of
// its writing on it (FIN or a reset from either side).
func (s *spdyStreams) serverEvent(id uint32, reply bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, known := s.types[id]; !known {
		return
	}
	m := &s.outDone
	if reply {
		m = &s.replied
	}
	if *m == nil {
		*m = map[uint32]bool{}
	}
	(*m)[id] = true
}

// Notice writes p (at most MaxNotice bytes) to the client as the
// session's stdout, between the server's frames: at once when it can,
// otherwise when the frame in progress ends (see above). It never blocks
// on the client. ErrNoStdout: there is no stdout to write to.
func (t *Tap) Notice(p []byte) error {
	out, ok := t.server.(outputter)
	if !ok {
		return ErrNoStdout
	}
	if len(p) > MaxNotice {
		return errors.New("kubestream: notice too long")
	}
	if err := t.Err(); err != nil {
		return err
	}
	t.omu.Lock()
	_, err := out.stdoutFrame(nil)
	t.omu.Unlock()
	if err != nil {
		return err
	}
	t.nmu.Lock()
	if len(t.notices) >= maxNotices {
		t.nmu.Unlock()
		return errors.New("kubestream: too many notices waiting")
	}
	t.notices = append(t.notices, append([]byte(nil), p...))
	t.nmu.Unlock()
	go t.kickNotices()
	return nil
}

func (t *Tap) hasNotices() bool {
	t.nmu.Lock()
	defer t.nmu.Unlock()
	return len(t.notices) > 0
}

// kickNotices writes the waiting notices if no write to the client is in
// progress (that one's writer writes them when it ends, see WriteTo).
func (t *Tap) kickNotices() {
	out, ok := t.server.(outputter)
	if !ok {
		return
	}
	for {
		if !t.omu.TryLock() {
			return
		}
		w := t.out
		if w != nil {
			_ = t.flushNotices(w, out)
		}
		more := w != nil && out.atBoundary()
		t.omu.Unlock()
		// Notices queued while this one wrote: write them too.
		if !more || !t.hasNotices() {
			return
		}
	}
}

// flushNotices writes the waiting notices to w if the server's bytes so
// far end between messages (under omu).
func (t *Tap) flushNotices(w io.Writer, out outputter) error {
	if !out.atBoundary() || t.Err() != nil {
		return nil
	}
	t.nmu.Lock()
	notices := t.notices
	t.notices = nil
	t.nmu.Unlock()
	for _, n := range notices {
		f, err := out.stdoutFrame(n)
		if err != nil {
			return nil // no stdout any more: dropped
		}
		if _, err := w.Write(f); err != nil {
			return err
		}
		if t.sink != nil {
			t.sink.Data(Stdout, n)
		}
	}
	return nil
}

// WriteTo copies the server's bytes to w (the client), parsing them on
// their way, with notices between frames. io.Copy uses it.
func (t *Tap) WriteTo(w io.Writer) (int64, error) {
	t.omu.Lock()
	t.out = w
	t.omu.Unlock()
	defer func() {
		t.omu.Lock()
		t.out = nil
		t.omu.Unlock()
	}()
	t.kickNotices()
	buf := make([]byte, relayBuffer)
	var total int64
	for {
		n, rerr := t.conn.Read(buf)
		if n > 0 {
			k, werr := t.relayOut(w, buf[:n])
			total += int64(k)
			if werr != nil {
				return total, werr
			}
			if t.hasNotices() {
				t.kickNotices()
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return total, nil
			}
			return total, rerr
		}
	}
}

// relayOut parses p and writes it to w, frame by frame while notices
// wait, writing them at the first boundary.
func (t *Tap) relayOut(w io.Writer, p []byte) (int, error) {
	t.omu.Lock()
	defer t.omu.Unlock()
	out, _ := t.server.(outputter)
	if out == nil || !t.hasNotices() {
		if _, perr := t.server.Write(p); perr != nil {
			t.fail(perr)
			return 0, perr
		}
		return w.Write(p)
	}
	done := 0
	for done < len(p) && t.hasNotices() {
		k := min(out.step(), len(p)-done)
		part := p[done : done+k]
		if _, perr := t.server.Write(part); perr != nil {
			t.fail(perr)
			return done, perr
		}
		n, err := w.Write(part)
		done += n
		if err != nil {
			return done, err
		}
		if err := t.flushNotices(w, out); err != nil {
			return done, err
		}
	}
	if done == len(p) {
		return done, nil
	}
	if _, perr := t.server.Write(p[done:]); perr != nil {
		t.fail(perr)
		return done, perr
	}
	n, err := w.Write(p[done:])
	return done + n, err
}

// readNotices, for a relay that uses Read: the waiting notices' frames,
// if the server's bytes so far end between messages (under omu).
func (t *Tap) readNotices() []byte {
	out, ok := t.server.(outputter)
	if !ok || !t.hasNotices() {
		return nil
	}
	var b sliceWriter
	_ = t.flushNotices(&b, out)
	return b
}

type sliceWriter []byte

func (s *sliceWriter) Write(p []byte) (int, error) {
	*s = append(*s, p...)
	return len(p), nil
}
