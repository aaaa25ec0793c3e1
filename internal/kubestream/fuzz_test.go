package kubestream

import (
	"net/http"
	"testing"

	"github.com/moby/spdystream/spdy"
)

// checkBounds fails when a parser holds more than its limits allow.
func checkBounds(t *testing.T, ps ...Parser) {
	t.Helper()
	for _, p := range ps {
		switch p := p.(type) {
		case *wsParser:
			if len(p.msg) > maxBase64Message || p.hn > len(p.hdr) {
				t.Fatalf("websocket parser holds %d message bytes, %d header bytes", len(p.msg), p.hn)
			}
		case *spdyParser:
			if len(p.ctrl) > maxControlFrame || len(p.resize) > maxResizeMessage || p.zin.Len() > 2*maxControlFrame || len(p.pair) > maxHeaderBlock {
				t.Fatalf("spdy parser holds %d control, %d resize, %d compressed, %d header bytes", len(p.ctrl), len(p.resize), p.zin.Len(), len(p.pair))
			}
		}
	}
}

var fuzzProtocols = []Protocol{
	{V5: true, Name: "v5.channel.k8s.io"},
	{Name: "v4.channel.k8s.io"},
	{Base64: true, Name: "v4.base64.channel.k8s.io"},
}

// FuzzWebSocket: any input ends in data, resizes or ErrMalformed, the
// same whatever the split (feed), within the parser's bounds.
func FuzzWebSocket(f *testing.F) {
	f.Add(uint8(0), wsFrame(true, opBinary, true, chanMsg(0, "ls\n")), wsFrame(true, opBinary, false, chanMsg(1, "a\r\n")))
	f.Add(uint8(0), join(wsFrame(false, opBinary, true, []byte{4}), wsFrame(true, opPing, true, nil),
		wsFrame(true, opContinuation, true, []byte(`{"Width":80,"Height":24}`)), wsFrame(true, opBinary, true, []byte{closeChannel, 0})),
		join(wsFrame(true, opBinary, false, chanMsg(3, `{"status":"Success"}`)), wsFrame(true, opClose, false, []byte{3, 232})))
	f.Add(uint8(1), wsFrame(true, opBinary, true, chanMsg(4, `{"Width":1,"Height":2}`)), wsFrame(true, opBinary, false, chanMsg(2, string(make([]byte, 300)))))
	f.Add(uint8(2), wsFrame(true, opText, true, []byte("0bHMK")), wsFrame(false, opText, false, []byte("1YS")))
	f.Add(uint8(0), []byte{0x82, 0xff, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3, 4}, []byte{0x82, 0x7e, 0, 0})
	f.Fuzz(func(t *testing.T, proto uint8, client, server []byte) {
		p := fuzzProtocols[int(proto)%len(fuzzProtocols)]
		_, _ = feed(t, p, client, server)
		c, s := NewParsers(p, newRecord())
		_, _ = c.Write(client)
		_, _ = s.Write(server)
		checkBounds(t, c, s)
	})
}

// FuzzSPDY: as FuzzWebSocket, for SPDY/3.1 (seeds written by spdystream's
// framer, the one Kubernetes uses).
func FuzzSPDY(f *testing.F) {
	f.Add(spdyFrames(f,
		&spdy.SettingsFrame{FlagIdValues: []spdy.SettingsFlagIdValue{{Id: spdy.SettingsInitialWindowSize, Value: 1 << 20}}},
		synStream(1, "error"), synStream(3, "stdin"), synStream(5, "stdout"), synStream(7, "resize"),
		data(7, `{"Width":100,"Height":30}`+"\n"), data(3, "echo hi\n"),
		&spdy.HeadersFrame{StreamId: 3, Headers: http.Header{"X": {"y"}}}, &spdy.PingFrame{Id: 1},
		&spdy.RstStreamFrame{StreamId: 3, Status: spdy.Cancel}, &spdy.GoAwayFrame{}),
		spdyFrames(f, &spdy.SynReplyFrame{StreamId: 1, Headers: http.Header{"A": {"b"}}},
			&spdy.WindowUpdateFrame{StreamId: 3, DeltaWindowSize: 100}, data(5, "hi\r\n"), data(1, `{}`)))
	f.Add([]byte{0x80, 3, 0, 1, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, []byte{0, 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, client, server []byte) {
		p := Protocol{SPDY: true}
		_, _ = feed(t, p, client, server)
		c, s := NewParsers(p, newRecord())
		_, _ = c.Write(client)
		_, _ = s.Write(server)
		checkBounds(t, c, s)
	})
}
