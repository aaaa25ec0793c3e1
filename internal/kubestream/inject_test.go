package kubestream

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/moby/spdystream/spdy"
)

// serverSees parses what reached the server as the client's direction,
// as the server would: the stdin it got, in order.
func serverSees(t *testing.T, proto Protocol, b []byte) string {
	t.Helper()
	r := newRecord()
	c, _ := NewParsers(proto, r)
	if _, err := c.Write(b); err != nil {
		t.Fatalf("the server would see a malformed stream: %v", err)
	}
	if r.out[Stdin] == nil {
		return ""
	}
	return r.out[Stdin].String()
}

func TestInjectWebSocket(t *testing.T) {
	for _, proto := range []Protocol{{V5: true, Name: "v5.channel.k8s.io"}, {Name: "v4.channel.k8s.io"}, {Base64: true, Name: "v4.base64.channel.k8s.io"}} {
		t.Run(proto.Name, func(t *testing.T) {
			msg := func(s string) []byte {
				if proto.Base64 {
					return wsFrame(true, opText, true, []byte("0"+b64(s)))
				}
				return wsFrame(true, opBinary, true, chanMsg(0, s))
			}
			c := &conn{r: bytes.NewReader(nil)}
			rec := newRecord()
			tap := NewTap(c, proto, rec, nil)
			if _, err := tap.Write(msg("ab")); err != nil {
				t.Fatal(err)
			}
			// Between messages: in at once.
			if err := tap.Inject([]byte("PEER1")); err != nil {
				t.Fatal(err)
			}
			// In the middle of the client's message: held until its end.
			second := msg("cd")
			if _, err := tap.Write(second[:3]); err != nil {
				t.Fatal(err)
			}
			if err := tap.Inject([]byte("PEER2")); err != nil {
				t.Fatal(err)
			}
			// The rest of that message and the next in one write.
			if _, err := tap.Write(append(second[3:], msg("ef")...)); err != nil {
				t.Fatal(err)
			}
			big := bytes.Repeat([]byte("x"), 40<<10)
			if err := tap.Inject(big); err != nil {
				t.Fatal(err)
			}
			want := "abPEER1cdPEER2ef" + string(big)
			if got := serverSees(t, proto, c.w.Bytes()); got != want {
				t.Fatalf("the server got stdin %.80q, want %.80q", got, want)
			}
			if got := rec.out[Stdin].String(); got != want {
				t.Fatalf("the sink got stdin %.80q", got)
			}
		})
	}
}

func TestInjectAfterStdinClosed(t *testing.T) {
	v5 := Protocol{V5: true, Name: "v5.channel.k8s.io"}
	c := &conn{r: bytes.NewReader(nil)}
	tap := NewTap(c, v5, newRecord(), nil)
	if _, err := tap.Write(wsFrame(true, opBinary, true, []byte{closeChannel, 0})); err != nil {
		t.Fatal(err)
	}
	if err := tap.Inject([]byte("late")); !errors.Is(err, ErrNoStdin) {
		t.Fatalf("inject after v5 closed stdin: %v", err)
	}

	s := &conn{r: bytes.NewReader(nil)}
	stap := NewTap(s, Protocol{SPDY: true}, newRecord(), nil)
	if err := stap.Inject([]byte("x")); !errors.Is(err, ErrNoStdin) {
		t.Fatalf("inject before stdin is opened: %v", err)
	}
	if _, err := stap.Write(spdyFrames(t, synStream(1, "error"), synStream(3, "stdin"))); err != nil {
		t.Fatal(err)
	}
	if err := stap.Inject([]byte("x")); err != nil {
		t.Fatal(err)
	}
	fin := data(3, "")
	fin.Flags = spdy.DataFlagFin
	if _, err := stap.Write(spdyFrames(t, fin)); err != nil {
		t.Fatal(err)
	}
	if err := stap.Inject([]byte("y")); !errors.Is(err, ErrNoStdin) {
		t.Fatalf("inject after stdin's FIN: %v", err)
	}
}

func TestInjectSPDY(t *testing.T) {
	var framer bytes.Buffer
	f, err := spdy.NewFramer(&framer, nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := func(fr spdy.Frame) []byte {
		framer.Reset()
		if err := f.WriteFrame(fr); err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), framer.Bytes()...)
	}
	c := &conn{r: bytes.NewReader(nil)}
	rec := newRecord()
	tap := NewTap(c, Protocol{SPDY: true}, rec, nil)
	// One framer for the whole connection: its header compression
	// context carries over.
	open := append(frame(synStream(1, "error")), frame(synStream(3, "stdin"))...)
	open = append(open, frame(synStream(5, "stdout"))...)
	if _, err := tap.Write(open); err != nil {
		t.Fatal(err)
	}
	if _, err := tap.Write(frame(data(3, "ab"))); err != nil {
		t.Fatal(err)
	}
	if err := tap.Inject([]byte("PEER1")); err != nil {
		t.Fatal(err)
	}
	second := frame(data(3, "cd"))
	if _, err := tap.Write(second[:5]); err != nil {
		t.Fatal(err)
	}
	if err := tap.Inject([]byte("PEER2")); err != nil {
		t.Fatal(err)
	}
	if _, err := tap.Write(append(second[5:], frame(data(3, "ef"))...)); err != nil {
		t.Fatal(err)
	}
	// What the server reads, with spdystream's own framer.
	rf, err := spdy.NewFramer(nil, bytes.NewReader(c.w.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for {
		fr, err := rf.ReadFrame()
		if err != nil {
			break
		}
		if d, ok := fr.(*spdy.DataFrame); ok && d.StreamId == 3 {
			got.Write(d.Data)
		}
	}
	if want := "abPEER1cdPEER2ef"; got.String() != want || rec.out[Stdin].String() != want {
		t.Fatalf("the server got stdin %q, the sink %q, want %q", got.String(), rec.out[Stdin].String(), want)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
