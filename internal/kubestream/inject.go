package kubestream

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// Input from a joined peer goes into a session's stdin as frames of the
// client's own protocol, written to the server between the client's
// frames (Tap.Inject): a WebSocket message on channel 0 (masked, as a
// client's must be; text and base64 in the base64 variants), or a SPDY
// data frame on the stream the client opened for stdin.

// ErrNoStdin is returned by Tap.Inject when the session has no stdin to
// write to: the client opened none, or closed it.
var ErrNoStdin = errors.New("kubestream: the session's stdin is closed")

// maxPendingInput bounds the peer input held while the client is in the
// middle of a frame.
const maxPendingInput = 64 << 10

// maxInjectChunk bounds the payload of one injected frame.
const maxInjectChunk = 16 << 10

// injector is the client-direction parser's side of injection.
type injector interface {
	// atBoundary: the bytes passed so far end between messages, where a
	// frame may be inserted.
	atBoundary() bool
	// step is how many of the next bytes can pass without crossing a
	// frame's end (at least 1).
	step() int
	// stdinFrame frames p as stdin, or fails with ErrNoStdin.
	stdinFrame(p []byte) ([]byte, error)
}

func (w *wsParser) atBoundary() bool { return !w.inPayload && w.hn == 0 && !w.inMsg && w.err == nil }

func (w *wsParser) step() int {
	if w.inPayload && w.remaining > 0 {
		return int(min(w.remaining, 1<<20))
	}
	return 1
}

func (w *wsParser) stdinFrame(p []byte) ([]byte, error) {
	if w.stdinClosed || w.closed {
		return nil, ErrNoStdin
	}
	var payload []byte
	op := byte(0x80 | opBinary)
	if w.proto.Base64 {
		op = 0x80 | opText
		payload = make([]byte, 1+base64.StdEncoding.EncodedLen(len(p)))
		payload[0] = '0'
		base64.StdEncoding.Encode(payload[1:], p)
	} else {
		payload = append([]byte{byte(Stdin)}, p...)
	}
	f := []byte{op}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xffff:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	var mask [4]byte
	if _, err := rand.Read(mask[:]); err != nil {
		return nil, err
	}
	f = append(f, mask[:]...)
	for i, b := range payload {
		f = append(f, b^mask[i&3])
	}
	return f, nil
}

func (s *spdyParser) atBoundary() bool { return !s.inPayload && s.hn == 0 && s.err == nil }

func (s *spdyParser) step() int {
	if s.inPayload && s.remaining > 0 {
		return int(s.remaining)
	}
	return 1
}

func (s *spdyParser) stdinFrame(p []byte) ([]byte, error) {
	if s.goneAway {
		return nil, ErrNoStdin
	}
	id, ok := s.streams.stdin()
	if !ok {
		return nil, ErrNoStdin
	}
	f := binary.BigEndian.AppendUint32(nil, id&0x7fffffff)
	n := len(p)
	f = append(f, 0, byte(n>>16), byte(n>>8), byte(n))
	return append(f, p...), nil
}

// stdin is the stream the client opened for stdin, while it is open.
func (s *spdyStreams) stdin() (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.types {
		if t == Stdin && !s.closed[id] {
			return id, true
		}
	}
	return 0, false
}

// close marks a stream closed by the client (FIN or RST_STREAM).
func (s *spdyStreams) close(id uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed == nil {
		s.closed = map[uint32]bool{}
	}
	if _, known := s.types[id]; known {
		s.closed[id] = true
	}
}

// Inject writes p to the server as stdin, as if the client had typed it,
// between the client's frames: at once when the client's bytes so far
// end between messages, otherwise held (at most 64 KiB) until they do.
// What is injected is reported to the sink as stdin (a recording of the
// input has it). ErrNoStdin: the client has closed its stdin, or never
// opened one.
func (t *Tap) Inject(p []byte) error {
	in, ok := t.client.(injector)
	if !ok {
		return ErrNoStdin
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if err := t.Err(); err != nil {
		return err
	}
	for len(p) > 0 {
		chunk := p[:min(len(p), maxInjectChunk)]
		p = p[len(chunk):]
		if !in.atBoundary() || len(t.pending) > 0 {
			if _, err := in.stdinFrame(nil); err != nil {
				return err
			}
			if t.pendingLen+len(chunk) > maxPendingInput {
				return errors.New("kubestream: too much input held while the client is mid-frame")
			}
			t.pending = append(t.pending, append([]byte(nil), chunk...))
			t.pendingLen += len(chunk)
			continue
		}
		if err := t.injectFrame(in, chunk); err != nil {
			return err
		}
	}
	return nil
}

// injectFrame writes data as one stdin frame (under wmu).
func (t *Tap) injectFrame(in injector, data []byte) error {
	f, err := in.stdinFrame(data)
	if err != nil {
		return err
	}
	if _, err := t.conn.Write(f); err != nil {
		return err
	}
	if t.sink != nil {
		t.sink.Data(Stdin, data)
	}
	return nil
}

// flushPending writes the held input, now that the client is between
// messages (under wmu). Input for a stdin closed meanwhile is dropped.
func (t *Tap) flushPending(in injector) error {
	pending := t.pending
	t.pending, t.pendingLen = nil, 0
	for _, data := range pending {
		if err := t.injectFrame(in, data); err != nil && !errors.Is(err, ErrNoStdin) {
			return err
		}
	}
	return nil
}
