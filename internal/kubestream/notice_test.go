package kubestream

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/moby/spdystream/spdy"
)

// chanWriter hands each write to the client over a channel.
type chanWriter chan []byte

func (c chanWriter) Write(p []byte) (int, error) {
	c <- append([]byte(nil), p...)
	return len(p), nil
}

// receive collects what the client got until it has n more bytes.
func receive(t *testing.T, c chanWriter, got *bytes.Buffer, n int) {
	t.Helper()
	want := got.Len() + n
	for got.Len() < want {
		select {
		case b := <-c:
			got.Write(b)
		case <-time.After(time.Minute): // a hang, not a timing goal
			t.Fatalf("the client got %d bytes, want %d", got.Len(), want)
		}
	}
}

// noticeRun relays server frames f1, f2 (in two parts) and f3 through a
// tap's WriteTo, with a notice between f1 and f2 and one in the middle of
// f2; it returns what the client received.
func noticeRun(t *testing.T, proto Protocol, setup func(tap *Tap), sees func([]byte) string, f1, f2, f3 []byte) ([]byte, *record) {
	t.Helper()
	sr, sw := io.Pipe()
	rec := newRecord()
	tap := NewTap(&conn{r: sr}, proto, rec, nil)
	if setup != nil {
		setup(tap)
	}
	client := make(chanWriter, 64)
	done := make(chan error, 1)
	go func() {
		_, err := tap.WriteTo(client)
		done <- err
	}()
	var got bytes.Buffer
	write := func(b []byte) {
		if _, err := sw.Write(b); err != nil {
			t.Fatal(err)
		}
		receive(t, client, &got, len(b))
	}
	write(f1)
	// Between frames, the server idle: written at once.
	if err := tap.Notice([]byte("N1")); err != nil {
		t.Fatal(err)
	}
	for sees(got.Bytes()) != "o1N1" {
		receive(t, client, &got, 1)
	}
	// In the middle of a frame: held until it ends.
	write(f2[:3])
	if err := tap.Notice([]byte("N2")); err != nil {
		t.Fatal(err)
	}
	rest := append(append([]byte(nil), f2[3:]...), f3...)
	if _, err := sw.Write(rest); err != nil {
		t.Fatal(err)
	}
	for !bytes.HasSuffix(got.Bytes(), f3) {
		receive(t, client, &got, 1)
	}
	sw.Close()
	if err := <-done; err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	return got.Bytes(), rec
}

// clientSees parses what reached the client as the server's direction.
func clientSees(t *testing.T, proto Protocol, b []byte) string {
	t.Helper()
	r := newRecord()
	_, s := NewParsers(proto, r)
	if _, err := s.Write(b); err != nil {
		t.Fatalf("the client would see a malformed stream: %v", err)
	}
	if r.out[Stdout] == nil {
		return ""
	}
	return r.out[Stdout].String()
}

// wsSees is what a client has seen of stdout so far (b may end
// mid-frame).
func wsSees(proto Protocol) func(b []byte) string {
	return func(b []byte) string {
		r := newRecord()
		_, s := NewParsers(proto, r)
		if _, err := s.Write(b); err != nil {
			return "malformed: " + err.Error()
		}
		if r.out[Stdout] == nil {
			return ""
		}
		return r.out[Stdout].String()
	}
}

func TestNoticeWebSocket(t *testing.T) {
	for _, proto := range []Protocol{{V5: true, Name: "v5.channel.k8s.io"}, {Name: "v4.channel.k8s.io"}, {Base64: true, Name: "v4.base64.channel.k8s.io"}} {
		t.Run(proto.Name, func(t *testing.T) {
			msg := func(s string) []byte {
				if proto.Base64 {
					return wsFrame(true, opText, false, []byte("1"+b64(s)))
				}
				return wsFrame(true, opBinary, false, chanMsg(1, s))
			}
			got, rec := noticeRun(t, proto, nil, wsSees(proto), msg("o1"), msg("o2-long-enough"), msg("o3"))
			want := "o1N1o2-long-enoughN2o3"
			if s := clientSees(t, proto, got); s != want {
				t.Fatalf("the client's stdout %q, want %q", s, want)
			}
			if s := rec.out[Stdout].String(); s != want {
				t.Fatalf("the sink's stdout %q, want %q (the recording has the notices)", s, want)
			}
		})
	}
}

func TestNoticeSPDY(t *testing.T) {
	var cb, sb bytes.Buffer
	cf, err := spdy.NewFramer(&cb, nil)
	if err != nil {
		t.Fatal(err)
	}
	sf, err := spdy.NewFramer(&sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := func(f *spdy.Framer, b *bytes.Buffer, fr spdy.Frame) []byte {
		b.Reset()
		if err := f.WriteFrame(fr); err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), b.Bytes()...)
	}
	proto := Protocol{SPDY: true}
	setup := func(tap *Tap) {
		open := append(frame(cf, &cb, synStream(1, "error")), frame(cf, &cb, synStream(3, "stdin"))...)
		open = append(open, frame(cf, &cb, synStream(5, "stdout"))...)
		if _, err := tap.Write(open); err != nil {
			t.Fatal(err)
		}
		// Before the server replied to stdout: nowhere to write.
		if err := tap.Notice([]byte("N0")); !errors.Is(err, ErrNoStdout) {
			t.Fatalf("notice before the reply: %v", err)
		}
	}
	reply := frame(sf, &sb, &spdy.SynReplyFrame{StreamId: 5, Headers: map[string][]string{"Streamtype": {"stdout"}}})
	f1 := append(reply, frame(sf, &sb, data(5, "o1"))...)
	// Read back with spdystream's framer, as kubectl does.
	sees := func(b []byte) string {
		rf, err := spdy.NewFramer(nil, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		for {
			fr, err := rf.ReadFrame()
			if err != nil {
				break
			}
			if d, ok := fr.(*spdy.DataFrame); ok && d.StreamId == 5 {
				out.Write(d.Data)
			}
		}
		return out.String()
	}
	got, rec := noticeRun(t, proto, setup, sees, f1, frame(sf, &sb, data(5, "o2-long-enough")), frame(sf, &sb, data(5, "o3")))
	want := "o1N1o2-long-enoughN2o3"
	if out := sees(got); out != want || rec.out[Stdout].String() != want {
		t.Fatalf("the client got stdout %q, the sink %q, want %q", sees(got), rec.out[Stdout].String(), want)
	}
}

// A server's FIN on stdout, or its close message, ends notices.
func TestNoticeAfterStdoutEnded(t *testing.T) {
	proto := Protocol{V5: true, Name: "v5.channel.k8s.io"}
	tap := NewTap(&conn{r: bytes.NewReader(wsFrame(true, opClose, false, nil))}, proto, newRecord(), nil)
	if _, err := io.Copy(io.Discard, tap); err != nil {
		t.Fatal(err)
	}
	if err := tap.Notice([]byte("x")); !errors.Is(err, ErrNoStdout) {
		t.Fatalf("notice after the server's close: %v", err)
	}
	s := spdyFrames(t, &spdy.SynReplyFrame{StreamId: 5}, &spdy.DataFrame{StreamId: 5, Data: []byte("bye"), Flags: spdy.DataFlagFin})
	stap := NewTap(&conn{r: bytes.NewReader(s)}, Protocol{SPDY: true}, newRecord(), nil)
	if _, err := stap.Write(spdyFrames(t, synStream(5, "stdout"))); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, stap); err != nil {
		t.Fatal(err)
	}
	if err := stap.Notice([]byte("x")); !errors.Is(err, ErrNoStdout) {
		t.Fatalf("notice after stdout's FIN: %v", err)
	}
	if err := tap.Notice(bytes.Repeat([]byte("x"), MaxNotice+1)); err == nil {
		t.Fatal("a notice longer than MaxNotice was taken")
	}
}

// A relay that reads with Read gets a notice at its next read between
// frames.
func TestNoticeRead(t *testing.T) {
	proto := Protocol{V5: true, Name: "v5.channel.k8s.io"}
	sr, sw := io.Pipe()
	tap := NewTap(&conn{r: sr}, proto, newRecord(), nil)
	go func() {
		sw.Write(wsFrame(true, opBinary, false, chanMsg(1, "o1")))
		sw.Close()
	}()
	buf := make([]byte, 64)
	n, err := tap.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := append([]byte(nil), buf[:n]...)
	if err := tap.Notice([]byte("N1")); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(readerOnly{tap})
	if err != nil {
		t.Fatal(err)
	}
	if s := clientSees(t, proto, append(got, rest...)); s != "o1N1" {
		t.Fatalf("the client's stdout %q, want %q", s, "o1N1")
	}
}

// readerOnly hides WriteTo, so that io.ReadAll uses Read.
type readerOnly struct{ r io.Reader }

func (r readerOnly) Read(p []byte) (int, error) { return r.r.Read(p) }
