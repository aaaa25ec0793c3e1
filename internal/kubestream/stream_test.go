package kubestream

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/moby/spdystream/spdy"
)

// record is a Sink that keeps what it got, as text.
type record struct {
	mu  sync.Mutex
	out map[Stream]*bytes.Buffer
	log []string
}

func newRecord() *record { return &record{out: map[Stream]*bytes.Buffer{}} }

func (r *record) Data(s Stream, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.out[s] == nil {
		r.out[s] = &bytes.Buffer{}
	}
	r.out[s].Write(p)
}

func (r *record) Resize(w, h uint16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, fmt.Sprintf("%dx%d", w, h))
}

func (r *record) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for s := Stdin; s <= Resize; s++ {
		if r.out[s] != nil {
			fmt.Fprintf(&b, "%s=%q ", s, r.out[s].String())
		}
	}
	fmt.Fprintf(&b, "resize=%v", r.log)
	return b.String()
}

// wsFrame encodes one WebSocket frame (RFC 6455); a mask when masked.
func wsFrame(fin bool, op byte, masked bool, payload []byte) []byte {
	var b bytes.Buffer
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b.WriteByte(b0)
	m := byte(0)
	if masked {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b.WriteByte(m | byte(n))
	case n < 1<<16:
		b.WriteByte(m | 126)
		_ = binary.Write(&b, binary.BigEndian, uint16(n))
	default:
		b.WriteByte(m | 127)
		_ = binary.Write(&b, binary.BigEndian, uint64(n))
	}
	if masked {
		key := []byte{0x37, 0xfa, 0x21, 0x3d}
		b.Write(key)
		for i, c := range payload {
			b.WriteByte(c ^ key[i%4])
		}
	} else {
		b.Write(payload)
	}
	return b.Bytes()
}

func chanMsg(ch byte, s string) []byte { return append([]byte{ch}, s...) }

// feed writes data to p whole and then, on a fresh parser, one byte at a
// time: both must give the same result.
func feed(t *testing.T, proto Protocol, client, server []byte) (string, error) {
	t.Helper()
	run := func(step int) (string, error) {
		r := newRecord()
		c, s := NewParsers(proto, r)
		var err error
		for _, d := range []struct {
			p    Parser
			data []byte
		}{{c, client}, {s, server}} {
			for i := 0; i < len(d.data) && err == nil; i += step {
				_, err = d.p.Write(d.data[i:min(i+step, len(d.data))])
			}
		}
		return r.String(), err
	}
	whole, errWhole := run(1 << 30)
	bytewise, errBytes := run(1)
	if whole != bytewise || (errWhole == nil) != (errBytes == nil) {
		t.Fatalf("split changes the result:\nwhole: %s (%v)\nbytes: %s (%v)", whole, errWhole, bytewise, errBytes)
	}
	return whole, errWhole
}

func join(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestWebSocketV5(t *testing.T) {
	v5 := Protocol{V5: true, Name: "v5.channel.k8s.io"}
	big := strings.Repeat("x", 70000) // a 64-bit length
	client := join(
		wsFrame(true, opBinary, true, chanMsg(4, `{"Width":120,"Height":40}`)),
		wsFrame(false, opBinary, true, chanMsg(0, "ec")),
		wsFrame(true, opPing, true, []byte("hi")), // control frames may come between fragments
		wsFrame(false, opContinuation, true, []byte("ho ")),
		wsFrame(true, opContinuation, true, []byte("hi\n")),
		wsFrame(true, opBinary, true, nil), // empty: ignored
		wsFrame(true, opBinary, true, []byte{4}),
		wsFrame(true, opBinary, true, []byte{closeChannel, 0}),
		wsFrame(true, opClose, true, []byte{3, 232}),
	)
	// The resize message above is split from its channel byte.
	client = bytes.Replace(client, wsFrame(true, opBinary, true, []byte{4}), join(
		wsFrame(false, opBinary, true, []byte{4}), wsFrame(true, opContinuation, true, []byte(`{"Width":80,"Height":24}`))), 1)
	server := join(
		wsFrame(true, opBinary, false, chanMsg(1, "$ echo hi\r\nhi\r\n")),
		wsFrame(true, opBinary, false, chanMsg(2, "oops")),
		wsFrame(true, opBinary, false, chanMsg(1, big)),
		wsFrame(true, opBinary, false, chanMsg(3, `{"status":"Success"}`)),
		wsFrame(true, opPong, false, nil),
	)
	got, err := feed(t, v5, client, server)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`stdin="echo hi\n" stdout=%q stderr="oops" error="{\"status\":\"Success\"}" resize=[120x40 80x24]`, "$ echo hi\r\nhi\r\n"+big)
	if got != want {
		t.Fatalf("got  %.300s\nwant %.300s", got, want)
	}
}

func TestWebSocketBase64(t *testing.T) {
	p := Protocol{Base64: true, Name: "v4.base64.channel.k8s.io"}
	enc := func(ch byte, s string) []byte {
		return append([]byte{'0' + ch}, base64.StdEncoding.EncodeToString([]byte(s))...)
	}
	client := join(wsFrame(true, opText, true, enc(0, "ls\n")), wsFrame(true, opText, true, enc(4, `{"Width":10,"Height":5}`)))
	server := join(wsFrame(false, opText, false, enc(1, "a b")[:3]), wsFrame(true, opContinuation, false, enc(1, "a b")[3:]))
	got, err := feed(t, p, client, server)
	if err != nil {
		t.Fatal(err)
	}
	if want := `stdin="ls\n" stdout="a b" resize=[10x5]`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestWebSocketMalformed(t *testing.T) {
	v4 := Protocol{Name: "v4.channel.k8s.io"}
	v5 := Protocol{V5: true, Name: "v5.channel.k8s.io"}
	b64 := Protocol{Base64: true, Name: "base64.channel.k8s.io"}
	huge := []byte{0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 0} // 256 MiB
	for _, tc := range []struct {
		name           string
		proto          Protocol
		client, server []byte
	}{
		{"unmasked client frame", v5, wsFrame(true, opBinary, false, chanMsg(0, "x")), nil},
		{"masked server frame", v5, nil, wsFrame(true, opBinary, true, chanMsg(1, "x"))},
		{"reserved bits", v5, nil, append([]byte{0xc2}, wsFrame(true, opBinary, false, chanMsg(1, "x"))[1:]...)},
		{"reserved opcode", v5, nil, wsFrame(true, 0x3, false, nil)},
		{"frame too large", v5, nil, huge},
		{"long control frame", v5, nil, wsFrame(true, opPing, false, make([]byte, 126))},
		{"fragmented control frame", v5, nil, wsFrame(false, opPing, false, nil)},
		{"continuation without message", v5, nil, wsFrame(true, opContinuation, false, []byte("x"))},
		{"message inside message", v5, nil, join(wsFrame(false, opBinary, false, chanMsg(1, "x")), wsFrame(true, opBinary, false, chanMsg(1, "y")))},
		{"unknown channel", v5, nil, wsFrame(true, opBinary, false, chanMsg(7, "x"))},
		{"close channel in v4", v4, wsFrame(true, opBinary, true, []byte{closeChannel, 0}), nil},
		{"close message without channel", v5, wsFrame(true, opBinary, true, []byte{closeChannel}), nil},
		{"close message, two channels", v5, wsFrame(true, opBinary, true, []byte{closeChannel, 0, 1}), nil},
		{"text in binary protocol", v5, nil, wsFrame(true, opText, false, []byte("1aGk="))},
		{"binary in base64 protocol", b64, nil, wsFrame(true, opBinary, false, chanMsg(1, "x"))},
		{"bad base64", b64, nil, wsFrame(true, opText, false, []byte("1!!"))},
		{"bad base64 channel", b64, nil, wsFrame(true, opText, false, []byte("9aGk="))},
		{"resize not json", v5, wsFrame(true, opBinary, true, chanMsg(4, "80x24")), nil},
		{"resize too large", v5, wsFrame(true, opBinary, true, chanMsg(4, `{"Width":20000,"Height":1}`)), nil},
		{"resize message too long", v5, wsFrame(true, opBinary, true, chanMsg(4, strings.Repeat(" ", maxResizeMessage+1))), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := feed(t, tc.proto, tc.client, tc.server); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want a malformed stream", err)
			}
		})
	}
}

// spdyClient writes frames as the Kubernetes SPDY client does (its
// framer is spdystream's, this one).
func spdyFrames(t testing.TB, frames ...spdy.Frame) []byte {
	t.Helper()
	var b bytes.Buffer
	f, err := spdy.NewFramer(&b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		if err := f.WriteFrame(fr); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func synStream(id uint32, typ string) *spdy.SynStreamFrame {
	return &spdy.SynStreamFrame{StreamId: spdy.StreamId(id), Headers: http.Header{"streamType": {typ}, "Port": {"0"}}}
}

func data(id uint32, s string) *spdy.DataFrame {
	return &spdy.DataFrame{StreamId: spdy.StreamId(id), Data: []byte(s)}
}

func TestSPDY(t *testing.T) {
	client := spdyFrames(t,
		&spdy.SettingsFrame{FlagIdValues: []spdy.SettingsFlagIdValue{{Id: spdy.SettingsInitialWindowSize, Value: 1 << 20}}},
		synStream(1, "error"), synStream(3, "stdin"), synStream(5, "stdout"), synStream(7, "stderr"), synStream(9, "resize"),
		data(9, `{"Width":100,"Height":30}`+"\n"+`{"Width":101,`), data(9, `"Height":31}`+"\n"),
		data(3, "echo hi\n"),
		&spdy.HeadersFrame{StreamId: 3, Headers: http.Header{"X": {"y"}}},
		&spdy.PingFrame{Id: 1},
		data(3, "exit\n"),
		&spdy.RstStreamFrame{StreamId: 3, Status: spdy.Cancel},
		&spdy.GoAwayFrame{},
	)
	server := spdyFrames(t,
		&spdy.SynReplyFrame{StreamId: 1, Headers: http.Header{"Streamtype": {"error"}}},
		&spdy.WindowUpdateFrame{StreamId: 3, DeltaWindowSize: 100},
		data(5, "hi\r\n"), data(7, "warn"), data(1, `{"status":"Success"}`),
		data(3, "ignored: stdin from the server"),
	)
	got, err := feed(t, Protocol{SPDY: true}, client, server)
	if err != nil {
		t.Fatal(err)
	}
	if want := `stdin="echo hi\nexit\n" stdout="hi\r\n" stderr="warn" error="{\"status\":\"Success\"}" resize=[100x30 101x31]`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestSPDYMalformed(t *testing.T) {
	p := Protocol{SPDY: true}
	open := spdyFrames(t, synStream(1, "stdin"))
	ctrl := func(typ uint16, payload []byte) []byte {
		h := []byte{0x80, 3, byte(typ >> 8), byte(typ), 0, byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload))}
		return append(h, payload...)
	}
	for _, tc := range []struct {
		name           string
		client, server []byte
	}{
		{"version 2", append([]byte{0x80, 2}, open[2:]...), nil},
		{"data on unopened stream", spdyFrames(t, data(3, "x")), nil},
		{"data on stream 0", []byte{0, 0, 0, 0, 0, 0, 0, 1, 'x'}, nil},
		{"server data on unopened stream", open, spdyFrames(t, data(3, "x"))},
		{"stream opened twice", spdyFrames(t, synStream(1, "stdin"), synStream(1, "stdout")), nil},
		{"unknown stream type", spdyFrames(t, synStream(1, "video")), nil},
		{"no stream type", spdyFrames(t, &spdy.SynStreamFrame{StreamId: 1, Headers: http.Header{"A": {"b"}}}), nil},
		{"even client stream", spdyFrames(t, synStream(2, "stdin")), nil},
		{"server opens a stream", nil, spdyFrames(t, synStream(2, "stdout"))},
		{"client replies", spdyFrames(t, &spdy.SynReplyFrame{StreamId: 1, Headers: http.Header{"A": {"b"}}}), nil},
		{"header block not zlib", ctrl(spdySynStream, append(make([]byte, 10), "not zlib at all"...)), nil},
		{"header block truncated", func() []byte {
			f := spdyFrames(t, synStream(1, "stdin"))
			f = f[:len(f)-6]
			f[7] -= 6
			return f
		}(), nil},
		{"short SYN_STREAM", ctrl(spdySynStream, make([]byte, 9)), nil},
		{"bad SETTINGS count", ctrl(spdySettings, []byte{0, 0, 0, 9, 0, 0, 0, 0}), nil},
		{"long PING", ctrl(spdyPing, make([]byte, 8)), nil},
		{"control frame too large", []byte{0x80, 3, 0, 9, 0, 0x10, 0, 0}, nil},
		{"resize not json", join(spdyFrames(t, synStream(1, "resize"), data(1, "80x24\n"))), nil},
		{"resize without end", join(spdyFrames(t, synStream(1, "resize"), data(1, strings.Repeat(" ", maxResizeMessage+1)))), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := feed(t, p, tc.client, tc.server); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want a malformed stream", err)
			}
		})
	}
}

func TestSPDYTooManyStreams(t *testing.T) {
	var frames []spdy.Frame
	for i := range maxSPDYStreams + 1 {
		frames = append(frames, synStream(uint32(2*i+1), "stdout"))
	}
	if _, err := feed(t, Protocol{SPDY: true}, spdyFrames(t, frames...), nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want a malformed stream", err)
	}
}

func TestDetect(t *testing.T) {
	res := func(code int, kv ...string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}}
		for i := 0; i < len(kv); i += 2 {
			r.Header.Set(kv[i], kv[i+1])
		}
		return r
	}
	for _, tc := range []struct {
		res  *http.Response
		want Protocol
		ok   bool
	}{
		{res(101, "Upgrade", "websocket", "Sec-WebSocket-Protocol", "v5.channel.k8s.io"), Protocol{V5: true, Name: "v5.channel.k8s.io"}, true},
		{res(101, "Upgrade", "WebSocket", "Sec-WebSocket-Protocol", "v4.base64.channel.k8s.io"), Protocol{Base64: true, Name: "v4.base64.channel.k8s.io"}, true},
		{res(101, "Upgrade", "SPDY/3.1", "X-Stream-Protocol-Version", "v4.channel.k8s.io"), Protocol{SPDY: true, Name: "v4.channel.k8s.io"}, true},
		{res(101, "Upgrade", "websocket", "Sec-WebSocket-Protocol", "SPDY/3.1+portforward.k8s.io"), Protocol{}, false},
		{res(101, "Upgrade", "h2c"), Protocol{}, false},
		{res(200, "Upgrade", "websocket", "Sec-WebSocket-Protocol", "v5.channel.k8s.io"), Protocol{}, false},
	} {
		got, ok := Detect(tc.res)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Detect(%v) = %+v, %v; want %+v, %v", tc.res.Header, got, ok, tc.want, tc.ok)
		}
	}
}

// conn is one end of a stream, for Tap.
type conn struct {
	r      io.Reader
	w      bytes.Buffer
	closed bool
}

func (c *conn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *conn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *conn) Close() error                { c.closed = true; return nil }

func TestTapEndsMalformedStream(t *testing.T) {
	v5 := Protocol{V5: true, Name: "v5.channel.k8s.io"}
	c := &conn{r: bytes.NewReader(join(wsFrame(true, opBinary, false, chanMsg(1, "ok")), wsFrame(true, 0x3, false, nil)))}
	r := newRecord()
	var ended error
	tap := NewTap(c, v5, r, func(err error) { ended = err })
	if _, err := tap.Write(wsFrame(true, opBinary, true, chanMsg(0, "in"))); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(tap); !errors.Is(err, ErrMalformed) {
		t.Fatalf("read: %v, want a malformed stream", err)
	}
	if !c.closed || !errors.Is(ended, ErrMalformed) || !errors.Is(tap.Err(), ErrMalformed) {
		t.Fatalf("closed %v, onClose %v, Err %v", c.closed, ended, tap.Err())
	}
	// The client's malformed bytes never reach the server.
	before := c.w.Len()
	if _, err := tap.Write(wsFrame(true, opBinary, true, chanMsg(0, "more"))); err == nil || c.w.Len() != before {
		t.Fatalf("write after the end: %v, %d bytes passed", err, c.w.Len()-before)
	}
	if got := r.String(); got != `stdin="in" stdout="ok" resize=[]` {
		t.Fatalf("got %s", got)
	}
}

func TestTapWithholdsMalformedClientBytes(t *testing.T) {
	c := &conn{r: bytes.NewReader(nil)}
	tap := NewTap(c, Protocol{SPDY: true}, newRecord(), nil)
	if _, err := tap.Write(spdyFrames(t, data(1, "x"))); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v", err)
	}
	if c.w.Len() != 0 || !c.closed {
		t.Fatalf("%d bytes passed, closed %v", c.w.Len(), c.closed)
	}
}
