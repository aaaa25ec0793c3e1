package tunnel

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpPair is a real loopback TCP connection: the writer's end wrapped in
// a GroupWriteConn, and the reader's end.
func tcpPair(t *testing.T) (*GroupWriteConn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	g := NewGroupWriteConn(c)
	t.Cleanup(func() { g.Close(); r.Close() })
	return g, r
}

// pattern is n bytes that differ from any shift of themselves.
func pattern(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestGroupWriteKeepsOrderAndBytes(t *testing.T) {
	g, r := tcpPair(t)
	want := pattern(8 << 20)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	rng := rand.New(rand.NewPCG(3, 4))
	for rest := want; len(rest) > 0; {
		k := min(len(rest), 1+rng.IntN(80<<10)) // from 1 byte to more than groupWriteMax/4
		n, err := g.Write(rest[:k])
		if err != nil || n != k {
			t.Fatalf("Write: %d of %d, %v", n, k, err)
		}
		rest = rest[k:]
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("the reader got %d bytes, not the %d written in order", len(b), len(want))
	}
}

func TestGroupWriteCloseWritesWhatIsPending(t *testing.T) {
	g, r := tcpPair(t)
	want := pattern(3 << 20)
	if _, err := g.Write(want); err != nil {
		t.Fatal(err)
	}
	// Close at once: what Write took must still reach the peer, then EOF.
	done := make(chan error, 1)
	go func() { done <- g.Close() }()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("after Close the reader got %d bytes of %d", len(b), len(want))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte("x")); !errors.Is(err, errGroupClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

// A peer that stops reading holds the writer back: Write waits once
// groupWriteMax bytes are pending (after the kernel's buffers are full),
// and goes on when the peer reads again.
func TestGroupWriteWaitsForASlowPeer(t *testing.T) {
	g, r := tcpPair(t)
	want := pattern(32 << 20) // far more than loopback's socket buffers
	wrote := make(chan error, 1)
	go func() {
		_, err := g.Write(want)
		wrote <- err
	}()
	// The writer cannot finish before the reader reads: the bytes must go
	// somewhere, and only groupWriteMax of them may wait here.
	waitFor(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.pending) >= groupWriteMax
	})
	select {
	case err := <-wrote:
		t.Fatalf("Write of 32 MiB returned (%v) while the peer read nothing", err)
	default:
	}
	b := make([]byte, len(want))
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatal("bytes differ")
	}
}

// A write error reaches the writer at its next Write, and every one after.
func TestGroupWriteErrorIsSticky(t *testing.T) {
	g, r := tcpPair(t)
	r.Close()
	chunk := make([]byte, 32<<10)
	var err error
	for err == nil {
		_, err = g.Write(chunk) // the peer's RST fails a flush, in time
	}
	if _, err2 := g.Write(chunk); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("the next Write: %v, want the first error %v", err2, err)
	}
}

// Close of a connection whose peer reads nothing returns, and a Write
// waiting for room ends with an error.
func TestGroupWriteCloseWithAStuckPeer(t *testing.T) {
	g, _ := tcpPair(t)
	wrote := make(chan error, 1)
	go func() {
		_, err := g.Write(make([]byte, 32<<20))
		wrote <- err
	}()
	waitFor(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.pending) >= groupWriteMax
	})
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err == nil {
		t.Fatal("the waiting Write succeeded on a closed connection")
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

// gatedConn records its writes; the first waits for gate.
type gatedConn struct {
	net.Conn
	gate   chan struct{}
	mu     sync.Mutex
	writes [][]byte
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	first := len(c.writes) == 0
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	if first {
		<-c.gate
	}
	return len(p), nil
}

func (c *gatedConn) Close() error { return nil }

// Packets written while a write is in progress go out together, in one
// write of the connection underneath.
func TestGroupWriteGathersPackets(t *testing.T) {
	c := &gatedConn{gate: make(chan struct{})}
	g := NewGroupWriteConn(c)
	pkt := pattern(32 << 10)
	if _, err := g.Write(pkt); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.writes) == 1 })
	for range 7 { // 7 more packets while the first write waits
		if _, err := g.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	close(c.gate)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if len(c.writes) != 2 || len(c.writes[0]) != len(pkt) || len(c.writes[1]) != 7*len(pkt) {
		sizes := []int{}
		for _, w := range c.writes {
			sizes = append(sizes, len(w))
		}
		t.Fatalf("writes underneath: %v bytes, want [%d %d]", sizes, len(pkt), 7*len(pkt))
	}
	if !bytes.Equal(c.writes[1], bytes.Repeat(pkt, 7)) {
		t.Fatal("the gathered write's bytes differ")
	}
}
