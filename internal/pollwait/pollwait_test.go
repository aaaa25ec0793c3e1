package pollwait

import (
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/tcptest"
)

// TestReadableWaitsForData: Readable returns only once the peer has
// written (or ended), and reads nothing itself.
func TestReadableWaitsForData(t *testing.T) {
	client, server := tcptest.Pair(t)
	rc, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Readable(rc) }()
	select {
	case err := <-done:
		t.Fatalf("Readable returned (%v) before any data", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitReturn(t, done, "after data arrived")
	// The byte is still there to read.
	buf := make([]byte, 2)
	if n, err := server.Read(buf); n != 1 || buf[0] != 'x' || err != nil {
		t.Fatalf("read after Readable: %q, %v", buf[:n], err)
	}
	// End of input counts as readable too.
	go func() { done <- Readable(rc) }()
	client.Close()
	waitReturn(t, done, "at end of input")
}

// waitReturn waits for Readable's result on done, failing the test if it
// is an error or does not come; when says what it was to return after.
func waitReturn(t *testing.T, done <-chan error, when string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("Readable did not return " + when)
	}
}
