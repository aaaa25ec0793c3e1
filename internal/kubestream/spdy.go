package kubestream

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"
)

// SPDY/3.1 control frame types.
const (
	spdySynStream    = 1
	spdySynReply     = 2
	spdyRstStream    = 3
	spdySettings     = 4
	spdyPing         = 6
	spdyGoAway       = 7
	spdyHeaders      = 8
	spdyWindowUpdate = 9
)

// spdyFlagFin ends a stream's data in its direction.
const spdyFlagFin = 0x01

// spdyStreams is the stream types of one connection, which the client
// names when it opens each stream (header "streamtype"); both
// directions' parsers share it.
type spdyStreams struct {
	mu    sync.Mutex
	types map[uint32]Stream
	// closed are the streams closed (FIN from the client, or reset).
	closed map[uint32]bool
	// replied are the streams the server replied to; outDone those it
	// ended (FIN from the server, or reset): notices go on stdout
	// between the two.
	replied, outDone map[uint32]bool
}

func (s *spdyStreams) get(id uint32) (Stream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.types[id]
	return t, ok
}

func (s *spdyStreams) add(id uint32, t Stream) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.types[id]; dup {
		return malformed("spdy: stream %d opened twice", id)
	}
	if len(s.types) >= maxSPDYStreams {
		return malformed("spdy: more than %d streams", maxSPDYStreams)
	}
	s.types[id] = t
	return nil
}

// spdyParser parses one direction of a SPDY/3.1 connection. Only the
// client's header blocks are decompressed (they name the streams); the
// server's are passed over.
type spdyParser struct {
	fromClient bool
	streams    *spdyStreams
	sink       Sink
	err        error

	hdr       [8]byte
	hn        int
	inPayload bool
	control   bool
	ctype     uint16
	streamID  uint32
	flags     byte
	remaining uint32
	ctrl      []byte // a control frame's payload, kept whole

	// The client's header compression context (one per direction, for
	// the whole connection).
	zin  bytes.Buffer
	zr   io.ReadCloser
	pair []byte

	resize []byte // resize stream bytes up to a newline

	goneAway bool // the client sent GOAWAY: nothing more is injected
}

func (s *spdyParser) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := len(p)
	for len(p) > 0 && s.err == nil {
		if !s.inPayload {
			k := copy(s.hdr[s.hn:], p)
			s.hn += k
			p = p[k:]
			if s.hn == len(s.hdr) {
				s.hn = 0
				s.err = s.startFrame()
			}
			continue
		}
		k := min(uint32(len(p)), s.remaining)
		chunk := p[:k]
		p = p[k:]
		s.remaining -= k
		if s.control {
			s.ctrl = append(s.ctrl, chunk...)
		} else {
			s.err = s.data(chunk)
		}
		if s.err == nil && s.remaining == 0 {
			s.err = s.endFrame()
		}
	}
	if s.err != nil {
		return 0, s.err
	}
	return n, nil
}

func (s *spdyParser) startFrame() error {
	h := s.hdr[:]
	length := uint32(h[5])<<16 | uint32(h[6])<<8 | uint32(h[7])
	s.flags = h[4]
	s.control = h[0]&0x80 != 0
	if s.control {
		if v := binary.BigEndian.Uint16(h[0:2]) & 0x7fff; v != 3 {
			return malformed("spdy: version %d", v)
		}
		s.ctype = binary.BigEndian.Uint16(h[2:4])
		if length > maxControlFrame {
			return malformed("spdy: control frame of %d bytes (limit %d)", length, maxControlFrame)
		}
		s.ctrl = s.ctrl[:0]
	} else {
		s.streamID = binary.BigEndian.Uint32(h[0:4]) & 0x7fffffff
		if s.streamID == 0 {
			return malformed("spdy: data frame on stream 0")
		}
		if _, ok := s.streams.get(s.streamID); !ok {
			return malformed("spdy: data frame on stream %d, which was not opened", s.streamID)
		}
	}
	s.remaining = length
	s.inPayload = true
	if length == 0 {
		return s.endFrame()
	}
	return nil
}

// data is a piece of a data frame's payload.
func (s *spdyParser) data(p []byte) error {
	t, _ := s.streams.get(s.streamID)
	switch t {
	case Resize:
		if !s.fromClient {
			return nil
		}
		for len(p) > 0 {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				if len(s.resize)+len(p) > maxResizeMessage {
					return malformed("spdy: resize message longer than %d bytes", maxResizeMessage)
				}
				s.resize = append(s.resize, p...)
				return nil
			}
			if len(s.resize)+i > maxResizeMessage {
				return malformed("spdy: resize message longer than %d bytes", maxResizeMessage)
			}
			s.resize = append(s.resize, p[:i]...)
			p = p[i+1:]
			if err := parseResize(s.resize, s.sink); err != nil {
				return err
			}
			s.resize = s.resize[:0]
		}
	case Stdin:
		if s.fromClient {
			s.sink.Data(t, p)
		}
	default:
		if !s.fromClient {
			s.sink.Data(t, p)
		}
	}
	return nil
}

func (s *spdyParser) endFrame() error {
	s.inPayload = false
	if !s.control {
		if s.flags&spdyFlagFin != 0 {
			if s.fromClient {
				s.streams.close(s.streamID)
			} else {
				s.streams.serverEvent(s.streamID, false)
			}
		}
		return nil
	}
	p := s.ctrl
	need := map[uint16]int{spdySynStream: 10, spdySynReply: 4, spdyRstStream: 8, spdySettings: 4, spdyPing: 4,
		spdyGoAway: 8, spdyHeaders: 4, spdyWindowUpdate: 8}
	if n, known := need[s.ctype]; known && len(p) < n {
		return malformed("spdy: control frame %d of %d bytes", s.ctype, len(p))
	}
	switch s.ctype {
	case spdySynStream:
		id := binary.BigEndian.Uint32(p[0:4]) & 0x7fffffff
		if id == 0 {
			return malformed("spdy: SYN_STREAM for stream 0")
		}
		if !s.fromClient {
			// A stream the server opens is not one of a command's.
			return malformed("spdy: the server opened stream %d", id)
		}
		if id%2 == 0 {
			return malformed("spdy: the client opened even stream %d", id)
		}
		hs, err := s.headers(p[10:])
		if err != nil {
			return err
		}
		t, err := streamType(hs["streamtype"])
		if err != nil {
			return err
		}
		if err := s.streams.add(id, t); err != nil {
			return err
		}
		if s.flags&spdyFlagFin != 0 {
			s.streams.close(id)
		}
		return nil
	case spdySynReply:
		if s.fromClient {
			// Its header block would move the client's compression
			// context past what is read here.
			return malformed("spdy: the client replied to a stream")
		}
		id := binary.BigEndian.Uint32(p[0:4]) & 0x7fffffff
		s.streams.serverEvent(id, true)
		if s.flags&spdyFlagFin != 0 {
			s.streams.serverEvent(id, false)
		}
	case spdyHeaders:
		if s.fromClient {
			_, err := s.headers(p[4:])
			return err
		}
	case spdySettings:
		if n := binary.BigEndian.Uint32(p[0:4]); uint64(n)*8+4 != uint64(len(p)) {
			return malformed("spdy: SETTINGS of %d entries in %d bytes", n, len(p))
		}
	case spdyRstStream, spdyGoAway, spdyWindowUpdate, spdyPing:
		if n := map[uint16]int{spdyRstStream: 8, spdyGoAway: 8, spdyWindowUpdate: 8, spdyPing: 4}[s.ctype]; len(p) != n {
			return malformed("spdy: control frame %d of %d bytes", s.ctype, len(p))
		}
		switch s.ctype {
		case spdyRstStream:
			id := binary.BigEndian.Uint32(p[0:4]) & 0x7fffffff
			s.streams.close(id)
			s.streams.serverEvent(id, false)
		case spdyGoAway:
			if s.fromClient {
				s.goneAway = true
			}
		}
	}
	// SYN_REPLY: the server's header blocks are not read. Unknown
	// control frames are ignored, as SPDY/3 requires.
	return nil
}

func streamType(v []string) (Stream, error) {
	if len(v) != 1 {
		return 0, malformed("spdy: a stream without one streamType")
	}
	switch v[0] {
	case "stdin":
		return Stdin, nil
	case "stdout":
		return Stdout, nil
	case "stderr":
		return Stderr, nil
	case "error":
		return Error, nil
	case "resize":
		return Resize, nil
	}
	return 0, malformed("spdy: stream type %.40q", v[0])
}

// headers decompresses one of the client's header blocks (all of them
// share one zlib stream, with SPDY's dictionary, each ending with a sync
// flush). It reads exactly the block's pairs, each length bounded, so a
// block that claims more than it holds fails instead of waiting.
func (s *spdyParser) headers(block []byte) (map[string][]string, error) {
	s.zin.Write(block)
	if s.zr == nil {
		zr, err := zlib.NewReaderDict(&s.zin, spdyDictionary)
		if err != nil {
			return nil, malformed("spdy: header block: %v", err)
		}
		s.zr = zr
	}
	total := 0
	read := func(n int) ([]byte, error) {
		total += n
		if n < 0 || total > maxHeaderBlock {
			return nil, malformed("spdy: header block larger than %d bytes", maxHeaderBlock)
		}
		if cap(s.pair) < n {
			s.pair = make([]byte, n)
		}
		b := s.pair[:n]
		if _, err := io.ReadFull(s.zr, b); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, malformed("spdy: header block: %v", err)
		}
		return b, nil
	}
	u32 := func() (int, error) {
		b, err := read(4)
		if err != nil {
			return 0, err
		}
		v := binary.BigEndian.Uint32(b)
		if v > maxHeaderBlock {
			return 0, malformed("spdy: header length %d", v)
		}
		return int(v), nil
	}
	n, err := u32()
	if err != nil {
		return nil, err
	}
	if n > maxHeaderPairs {
		return nil, malformed("spdy: %d header pairs (limit %d)", n, maxHeaderPairs)
	}
	out := make(map[string][]string, n)
	for range n {
		l, err := u32()
		if err != nil {
			return nil, err
		}
		name, err := read(l)
		if err != nil {
			return nil, err
		}
		key := strings.ToLower(string(name))
		if l, err = u32(); err != nil {
			return nil, err
		}
		value, err := read(l)
		if err != nil {
			return nil, err
		}
		// Several values of one name are NUL-separated.
		out[key] = append(out[key], strings.Split(string(value), "\x00")...)
	}
	// What is left of the block (the sync flush) is read with the next.
	if s.zin.Len() > maxControlFrame {
		return nil, malformed("spdy: header blocks not consumed")
	}
	return out, nil
}
