package kubestream

import (
	"encoding/base64"
	"encoding/binary"
)

// WebSocket opcodes (RFC 6455).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// closeChannel is v5's close message: [255, channel] half-closes a
// channel (kubectl sends it for stdin).
const closeChannel = 255

// wsParser parses one direction of a WebSocket connection carrying the
// channel.k8s.io protocols: every data message starts with its channel
// (a byte; in the base64 variants an ASCII digit, the rest base64).
type wsParser struct {
	fromClient bool
	proto      Protocol
	sink       Sink
	err        error

	// The frame header being read.
	hdr  [14]byte
	hn   int
	hlen int // its full length, once known (0: not yet)
	// The frame's payload.
	inPayload bool
	remaining uint64
	opcode    byte
	fin       bool
	masked    bool
	mask      [4]byte
	maskPos   int
	scratch   []byte

	// The data message (frames up to FIN).
	inMsg    bool
	chanSeen bool
	channel  byte
	msg      []byte // kept whole: base64, resize and close messages

	// What injection needs to know (client direction): the client
	// closed stdin (v5's close message), or the connection.
	stdinClosed, closed bool
}

func (w *wsParser) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	for len(p) > 0 {
		if !w.inPayload {
			p = w.header(p)
		} else {
			p = w.payload(p)
		}
		if w.err != nil {
			return 0, w.err
		}
	}
	return n, nil
}

// header takes header bytes from p and returns the rest.
func (w *wsParser) header(p []byte) []byte {
	for len(p) > 0 && (w.hlen == 0 || w.hn < w.hlen) {
		w.hdr[w.hn] = p[0]
		w.hn++
		p = p[1:]
		if w.hn == 2 {
			w.hlen = 2
			switch w.hdr[1] & 0x7f {
			case 126:
				w.hlen += 2
			case 127:
				w.hlen += 8
			}
			if w.hdr[1]&0x80 != 0 {
				w.hlen += 4
			}
		}
	}
	if w.hlen == 0 || w.hn < w.hlen {
		return p
	}
	w.err = w.startFrame()
	w.hn, w.hlen = 0, 0
	return p
}

func (w *wsParser) startFrame() error {
	b0, b1 := w.hdr[0], w.hdr[1]
	if b0&0x70 != 0 {
		return malformed("websocket: reserved bits set (no extension was negotiated)")
	}
	w.fin, w.opcode, w.masked = b0&0x80 != 0, b0&0x0f, b1&0x80 != 0
	if w.masked != w.fromClient {
		if w.fromClient {
			return malformed("websocket: a client frame is not masked")
		}
		return malformed("websocket: a server frame is masked")
	}
	i := 2
	length := uint64(b1 & 0x7f)
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(w.hdr[2:4]))
		i = 4
	case 127:
		length = binary.BigEndian.Uint64(w.hdr[2:10])
		i = 10
	}
	if w.masked {
		copy(w.mask[:], w.hdr[i:i+4])
		w.maskPos = 0
	}
	switch w.opcode {
	case opClose, opPing, opPong:
		if !w.fin || length > 125 {
			return malformed("websocket: control frame fragmented or longer than 125 bytes")
		}
	case opText, opBinary:
		if w.inMsg {
			return malformed("websocket: a new message inside a fragmented one")
		}
		if (w.opcode == opText) != w.proto.Base64 {
			return malformed("websocket: %s message in protocol %q", map[bool]string{true: "text", false: "binary"}[w.opcode == opText], w.proto.Name)
		}
		w.inMsg, w.chanSeen, w.msg = true, false, w.msg[:0]
	case opContinuation:
		if !w.inMsg {
			return malformed("websocket: continuation frame outside a message")
		}
	default:
		return malformed("websocket: reserved opcode %#x", w.opcode)
	}
	if length > MaxWebSocketFrame {
		return malformed("websocket: frame of %d bytes (limit %d)", length, MaxWebSocketFrame)
	}
	w.remaining = length
	w.inPayload = true
	if length == 0 {
		return w.endFrame()
	}
	return nil
}

// payload takes payload bytes from p and returns the rest.
func (w *wsParser) payload(p []byte) []byte {
	n := uint64(len(p))
	if n > w.remaining {
		n = w.remaining
	}
	chunk, rest := p[:n], p[n:]
	w.remaining -= n
	if w.opcode < opClose { // data; control payloads are not used
		if w.masked {
			// Unmask a copy: p is the caller's, on its way on.
			if cap(w.scratch) < len(chunk) {
				w.scratch = make([]byte, len(chunk), max(len(chunk), 4096))
			}
			buf := w.scratch[:len(chunk)]
			for i, b := range chunk {
				buf[i] = b ^ w.mask[w.maskPos&3]
				w.maskPos++
			}
			chunk = buf
		}
		if err := w.data(chunk); err != nil {
			w.err = err
			return nil
		}
	}
	if w.remaining == 0 {
		w.err = w.endFrame()
	}
	return rest
}

// data is a piece of a data message's payload.
func (w *wsParser) data(p []byte) error {
	if w.proto.Base64 {
		if len(w.msg)+len(p) > maxBase64Message {
			return malformed("websocket: base64 message longer than %d bytes", maxBase64Message)
		}
		w.msg = append(w.msg, p...)
		return nil
	}
	if !w.chanSeen && len(p) > 0 {
		w.channel, w.chanSeen = p[0], true
		p = p[1:]
		if err := w.checkChannel(); err != nil {
			return err
		}
	}
	if len(p) == 0 {
		return nil
	}
	switch w.channel {
	case byte(Resize):
		if len(w.msg)+len(p) > maxResizeMessage {
			return malformed("websocket: resize message longer than %d bytes", maxResizeMessage)
		}
		w.msg = append(w.msg, p...)
	case closeChannel:
		if len(w.msg)+len(p) > 1 {
			return malformed("websocket: close message longer than one channel")
		}
		w.msg = append(w.msg, p...)
	default:
		w.sink.Data(Stream(w.channel), p)
	}
	return nil
}

func (w *wsParser) checkChannel() error {
	switch {
	case w.channel <= byte(Resize):
		return nil
	case w.channel == closeChannel && w.proto.V5:
		return nil
	}
	return malformed("websocket: channel %d in protocol %q", w.channel, w.proto.Name)
}

func (w *wsParser) endFrame() error {
	w.inPayload = false
	if w.opcode == opClose {
		w.closed = true
	}
	if w.opcode >= opClose || !w.fin {
		return nil
	}
	w.inMsg = false
	if w.proto.Base64 {
		return w.endBase64()
	}
	switch {
	case !w.chanSeen:
		return nil // an empty message: ignored, as the API server does
	case w.channel == byte(Resize):
		return parseResize(w.msg, w.sink)
	case w.channel == closeChannel:
		if len(w.msg) != 1 || w.msg[0] > byte(Resize) {
			return malformed("websocket: close message names no channel")
		}
		if w.msg[0] == byte(Stdin) {
			w.stdinClosed = true
		}
	}
	return nil
}

func (w *wsParser) endBase64() error {
	if len(w.msg) == 0 {
		return nil
	}
	c := w.msg[0]
	if c < '0' || c > '0'+byte(Resize) {
		return malformed("websocket: base64 message on channel %q", c)
	}
	w.channel = c - '0'
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(w.msg)-1))
	n, err := base64.StdEncoding.Decode(dec, w.msg[1:])
	if err != nil {
		return malformed("websocket: base64: %v", err)
	}
	if Stream(w.channel) == Resize {
		if n > maxResizeMessage {
			return malformed("websocket: resize message longer than %d bytes", maxResizeMessage)
		}
		return parseResize(dec[:n], w.sink)
	}
	if n > 0 {
		w.sink.Data(Stream(w.channel), dec[:n])
	}
	return nil
}
