package proxy

import (
	"bytes"
	"crypto/rand"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/tcptest"
)

func TestPreambleRoundTrip(t *testing.T) {
	tk := newTicket()
	if len(tk) != 2*ticketBytes || newTicket() == tk {
		t.Fatalf("ticket %q", tk)
	}
	for _, kind := range []byte{dataKindNode, dataKindUser} {
		b := preamble(kind, tk)
		if len(b) != preambleLen {
			t.Fatalf("preamble length %d, want %d", len(b), preambleLen)
		}
		k, got, err := parsePreamble(b)
		if err != nil || k != kind || got != tk {
			t.Fatalf("parse: %c %q %v", k, got, err)
		}
	}
	for _, bad := range []string{
		"",
		DataMagic,
		"WDAX" + "u" + tk + "\n",
		DataMagic + "u" + tk + "\r",
		DataMagic + "z" + tk + "\n",
		DataMagic + "u" + tk[:62] + "zz\n",
		DataMagic + "u" + strings.Repeat("AB", ticketBytes) + "\n",
		DataMagic + "u" + tk + "\n\n",
	} {
		if _, _, err := parsePreamble([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzParsePreamble: the first bytes of a data connection come from anyone
// who can reach the proxy's port.
func FuzzParsePreamble(f *testing.F) {
	f.Add(preamble(dataKindUser, newTicket()))
	f.Add(preamble(dataKindNode, newTicket()))
	f.Add([]byte(DataMagic + "u\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, ticket, err := parsePreamble(b)
		if err != nil {
			return
		}
		if kind != dataKindNode && kind != dataKindUser || len(ticket) != 2*ticketBytes {
			t.Fatalf("accepted kind %q ticket %q", kind, ticket)
		}
		if string(preamble(kind, ticket)) != string(b) {
			t.Fatalf("round trip of %q", b)
		}
	})
}

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
