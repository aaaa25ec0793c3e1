// Package kubestream parses the streaming protocols of Kubernetes' exec
// and attach (and the parts of them a recording needs) as they pass the
// proxy: WebSocket with the channel.k8s.io subprotocols (v5, which kubectl
// uses since 1.30, v4, and the base64 variants) and SPDY/3.1 (older
// clients, or KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false).
//
// The parsers are incremental (bytes arrive as they are read from the
// connection, in any split), bounded (a frame header, a control frame,
// a header block, a resize or error message each have a fixed limit;
// data is passed on as it arrives, never buffered whole) and strict: a
// frame that is malformed or that the negotiated protocol does not allow
// is an error, and Tap then ends that stream, and only that stream.
//
// The package is core code: standard library only.
package kubestream

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Stream is one of the channels of a remote command.
type Stream uint8

// The channels, numbered as in the WebSocket protocols.
const (
	Stdin  Stream = 0
	Stdout Stream = 1
	Stderr Stream = 2
	// Error carries the command's final Status (its exit code).
	Error Stream = 3
	// Resize carries terminal sizes (as Sink.Resize).
	Resize Stream = 4
)

func (s Stream) String() string {
	switch s {
	case Stdin:
		return "stdin"
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	case Error:
		return "error"
	case Resize:
		return "resize"
	}
	return fmt.Sprintf("stream(%d)", uint8(s))
}

// Sink receives what a parser finds. p is valid only during the call.
// Calls come from the goroutine feeding the parser (one per direction).
type Sink interface {
	// Data is a piece of a stream's bytes (stdin, stdout, stderr, error).
	Data(s Stream, p []byte)
	// Resize is a terminal size the client sent.
	Resize(width, height uint16)
}

// Limits.
const (
	// MaxWebSocketFrame bounds one WebSocket frame's payload (the API
	// server's own limit on a message is 32 MiB).
	MaxWebSocketFrame = 32 << 20
	// maxBase64Message bounds a base64 message, which is decoded whole.
	maxBase64Message = 1 << 20
	// maxResizeMessage bounds one terminal size message.
	maxResizeMessage = 4 << 10
	// maxControlFrame bounds a SPDY control frame, kept whole.
	maxControlFrame = 256 << 10
	// maxHeaderBlock bounds a SPDY header block once decompressed.
	maxHeaderBlock = 64 << 10
	// maxHeaderPairs bounds the pairs of one header block.
	maxHeaderPairs = 128
	// maxSPDYStreams bounds the streams a connection opens (exec uses
	// five).
	maxSPDYStreams = 64
	// maxTerminal bounds a terminal's width and height.
	maxTerminal = 10000
)

// ErrMalformed is wrapped by every error a parser returns.
var ErrMalformed = errors.New("kubestream: malformed stream")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Protocol is a negotiated streaming protocol.
type Protocol struct {
	// SPDY is SPDY/3.1; otherwise WebSocket.
	SPDY bool
	// Base64 (WebSocket only): text messages, base64-encoded.
	Base64 bool
	// V5 (WebSocket only): the close message (channel 255) is allowed.
	V5 bool
	// Name is the subprotocol as negotiated.
	Name string
}

// Detect reads the protocol from an upgrade's response (101 Switching
// Protocols); false when it is not an exec/attach protocol this package
// parses.
func Detect(res *http.Response) (Protocol, bool) {
	if res == nil || res.StatusCode != http.StatusSwitchingProtocols {
		return Protocol{}, false
	}
	up := strings.ToLower(strings.TrimSpace(res.Header.Get("Upgrade")))
	switch {
	case up == "websocket":
		name := strings.TrimSpace(res.Header.Get("Sec-WebSocket-Protocol"))
		switch name {
		case "v5.channel.k8s.io":
			return Protocol{V5: true, Name: name}, true
		case "v4.channel.k8s.io", "channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io":
			return Protocol{Name: name}, true
		case "v4.base64.channel.k8s.io", "base64.channel.k8s.io":
			return Protocol{Base64: true, Name: name}, true
		}
	case strings.HasPrefix(up, "spdy/3.1"):
		return Protocol{SPDY: true, Name: res.Header.Get("X-Stream-Protocol-Version")}, true
	}
	return Protocol{}, false
}

// Parser is one direction of a stream.
type Parser interface {
	// Write feeds the bytes that passed; an error is final.
	Write(p []byte) (int, error)
}

// NewParsers returns the parsers of the client's direction (client to
// server) and the server's, which report to sink.
func NewParsers(p Protocol, sink Sink) (client, server Parser) {
	if p.SPDY {
		streams := &spdyStreams{types: map[uint32]Stream{}}
		return &spdyParser{fromClient: true, streams: streams, sink: sink},
			&spdyParser{streams: streams, sink: sink}
	}
	return &wsParser{fromClient: true, proto: p, sink: sink}, &wsParser{proto: p, sink: sink}
}

// terminalSize is remotecommand's TerminalSize as JSON.
type terminalSize struct {
	Width  uint16 `json:"Width"`
	Height uint16 `json:"Height"`
}

func parseResize(p []byte, sink Sink) error {
	var ts terminalSize
	if err := json.Unmarshal(p, &ts); err != nil {
		return malformed("terminal size: %v", err)
	}
	if ts.Width > maxTerminal || ts.Height > maxTerminal {
		return malformed("terminal size %dx%d", ts.Width, ts.Height)
	}
	sink.Resize(ts.Width, ts.Height)
	return nil
}
