package tunnel

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// Buffer may be called between reads: nothing read before or after is
// lost or reordered, and reads after it take more than was asked for
// from the connection (what has arrived).
func TestBufferedConnSwitchesWithoutLoss(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	bc := NewBufferedConn(a)
	data := bytes.Repeat([]byte("tunnel packet "), 20000)
	go func() {
		_, _ = b.Write(data)
		b.Close()
	}()
	got := make([]byte, 100)
	if _, err := io.ReadFull(bc, got); err != nil {
		t.Fatal(err)
	}
	bc.Buffer()
	bc.Buffer() // twice: the same buffer
	br := bc.br.Load()
	small := make([]byte, 10)
	if _, err := io.ReadFull(bc, small); err != nil {
		t.Fatal(err)
	}
	if br.Buffered() == 0 {
		t.Fatal("a small read after Buffer took no more from the connection")
	}
	if bc.br.Load() != br {
		t.Fatal("a second Buffer replaced the buffer")
	}
	got = append(got, small...)
	rest, err := io.ReadAll(bc)
	if err != nil {
		t.Fatal(err)
	}
	if got = append(got, rest...); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not what was sent (%d bytes)", len(got), len(data))
	}
}
