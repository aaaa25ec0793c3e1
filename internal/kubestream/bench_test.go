package kubestream

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	"github.com/moby/spdystream/spdy"
)

type nopSink struct{}

func (nopSink) Data(Stream, []byte)   {}
func (nopSink) Resize(uint16, uint16) {}

// benchStream is exec output as the server sends it: 32 KiB of stdout a
// frame, 64 MiB in all.
func benchStream(b *testing.B, p Protocol) []byte {
	chunk := bytes.Repeat([]byte("output line of a command\r\n"), 32<<10/27)
	var out []byte
	if p.SPDY {
		frames := []spdy.Frame{}
		for range 64 << 20 / len(chunk) {
			frames = append(frames, data(1, string(chunk)))
		}
		return spdyFrames(b, frames...)
	}
	for range 64 << 20 / len(chunk) {
		out = append(out, wsFrame(true, opBinary, false, append([]byte{1}, chunk...))...)
	}
	return out
}

// relay copies the stream from a reader to io.Discard through a 32 KiB
// buffer, as the reverse proxy does: through a Tap, or not (the
// baseline, in the same run).
func benchRelay(b *testing.B, p Protocol, tapped bool) {
	stream := benchStream(b, p)
	b.SetBytes(int64(len(stream)))
	b.ResetTimer()
	for range b.N {
		var src io.ReadWriteCloser = &conn{r: bytes.NewReader(stream)}
		if tapped {
			t := NewTap(src, p, nopSink{}, nil)
			if p.SPDY {
				// The client opened stdout first.
				if _, err := t.client.Write(spdyFrames(b, synStream(1, "stdout"))); err != nil {
					b.Fatal(err)
				}
			}
			src = t
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{src}, make([]byte, 32<<10)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRelayWebSocketBaseline(b *testing.B) { benchRelay(b, Protocol{V5: true}, false) }
func BenchmarkRelayWebSocketTapped(b *testing.B)   { benchRelay(b, Protocol{V5: true}, true) }
func BenchmarkRelaySPDYBaseline(b *testing.B)      { benchRelay(b, Protocol{SPDY: true}, false) }
func BenchmarkRelaySPDYTapped(b *testing.B)        { benchRelay(b, Protocol{SPDY: true}, true) }

// BenchmarkTapMemory reports the heap a live tapped session holds (both
// parsers, after an interactive exchange: resize, typed lines, 32 KiB
// output frames), as bytes/session.
func BenchmarkTapMemory(b *testing.B) {
	for _, p := range []Protocol{{V5: true, Name: "v5.channel.k8s.io"}, {SPDY: true}} {
		name := "websocket"
		var client, server []byte
		if p.SPDY {
			name = "spdy"
			client = spdyFrames(b, synStream(1, "error"), synStream(3, "stdin"), synStream(5, "stdout"), synStream(7, "resize"),
				data(7, `{"Width":120,"Height":40}`+"\n"), data(3, "ls -l\n"))
			server = spdyFrames(b, data(5, string(bytes.Repeat([]byte("x"), 32<<10))))
		} else {
			client = join(wsFrame(true, opBinary, true, chanMsg(4, `{"Width":120,"Height":40}`)), wsFrame(true, opBinary, true, chanMsg(0, "ls -l\n")))
			server = wsFrame(true, opBinary, false, chanMsg(1, string(bytes.Repeat([]byte("x"), 32<<10))))
		}
		b.Run(name, func(b *testing.B) {
			const n = 1000
			var before, after runtime.MemStats
			for range b.N {
				runtime.GC()
				runtime.ReadMemStats(&before)
				taps := make([]*Tap, n)
				for i := range taps {
					taps[i] = NewTap(&conn{r: bytes.NewReader(server)}, p, nopSink{}, nil)
					if _, err := taps[i].Write(client); err != nil {
						b.Fatal(err)
					}
					buf := make([]byte, 32<<10)
					for {
						if _, err := taps[i].Read(buf); err != nil {
							break
						}
					}
					taps[i].conn.(*conn).w.Reset() // the test conn's own buffer is not the tap's
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/session")
				runtime.KeepAlive(taps)
			}
		})
	}
}
