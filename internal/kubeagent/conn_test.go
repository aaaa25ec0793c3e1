package kubeagent

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestDeadlineConn: a read deadline in the past ends a pending Read (as
// net/http's server does before it hands over an upgraded connection)
// without losing what arrives afterwards; data passes both ways; Close
// ends a pending Read.
func TestDeadlineConn(t *testing.T) {
	far, near := net.Pipe()
	c := withDeadlines(near)
	defer c.Close()

	got := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Read returned before any data or deadline: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read after a past deadline: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a past read deadline did not end the pending Read")
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with the deadline still past: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})

	// What the peer sends now is all there, in order.
	msg := make([]byte, 100<<10)
	for i := range msg {
		msg[i] = byte(i % 251)
	}
	go func() { _, _ = far.Write(msg); far.Write([]byte("!")) }()
	buf := make([]byte, len(msg)+1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	for i := range msg {
		if buf[i] != msg[i] {
			t.Fatalf("byte %d: %d, want %d", i, buf[i], msg[i])
		}
	}
	// A deadline in the future passes.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := c.Read(buf[:1]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past a future deadline: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})

	// Writes reach the peer.
	go func() { _, _ = c.Write([]byte("pong")) }()
	if _, err := io.ReadFull(far, buf[:4]); err != nil || string(buf[:4]) != "pong" {
		t.Fatalf("peer read %q, %v", buf[:4], err)
	}

	// Close ends a pending Read; the peer sees the end.
	go func() {
		_, err := c.Read(buf)
		got <- err
	}()
	c.Close()
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("Read after Close returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a pending Read")
	}
}
