package proxy

import (
	"bytes"
	"crypto/rand"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/tcptest"
)

func TestCopyIntoChannelCopiesEverything(t *testing.T) {
	client, server := tcptest.Pair(t)
	// More than a few buffers' worth, in writes that fill a read exactly
	// and in odd sizes, with pauses that make reads come up short.
	want := make([]byte, 3<<20+12345)
	_, _ = rand.Read(want)
	go func() {
		rest := want
		for i, size := range []int{256 << 10, 1, 512 << 10, 7, 1 << 20} {
			_, _ = client.Write(rest[:size])
			rest = rest[size:]
			if i%2 == 1 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		_, _ = client.Write(rest)
		_ = client.CloseWrite()
	}()
	var got syncbuf.Buffer
	done := make(chan struct{})
	go func() {
		copyIntoChannel(&got, server)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(patience.Left(t)):
		t.Fatalf("copy did not end at EOF (%d of %d bytes)", got.Len(), len(want))
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("copied %d bytes, want %d, or they differ", got.Len(), len(want))
	}
}

// An idle relayed session (ssh -J) must not hold a 256 KiB buffer: it was
// most of the proxy's memory per live session.
func TestCopyIntoChannelIdleHoldsNoBuffer(t *testing.T) {
	const n = 64
	heap := func() uint64 {
		runtime.GC()
		runtime.GC() // and the pool's victim cache
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	var wg sync.WaitGroup
	clients := make([]net.Conn, n)
	writers := make([]*syncbuf.Buffer, n)
	for i := range n {
		client, server := tcptest.Pair(t)
		clients[i], writers[i] = client, &syncbuf.Buffer{}
		wg.Go(func() { copyIntoChannel(writers[i], server) })
		// Each copy has moved data once, then waits.
		if _, err := client.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := patience.Deadline(t)
	for i := range n {
		for writers[i].Len() < 5 {
			if time.Now().After(deadline) {
				t.Fatalf("copy %d did not deliver", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	grew := int64(heap()) - int64(before)
	for _, c := range clients {
		c.Close()
	}
	wg.Wait()
	if limit := int64(n * 32 << 10); grew > limit {
		t.Fatalf("%d idle copies hold %d KiB of heap (%d KiB each), want under %d KiB in all", n, grew>>10, grew/n>>10, limit>>10)
	}
	t.Logf("%d idle copies: heap grew %d KiB", n, grew>>10)
}
