package recording

import (
	"bytes"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
)

// uploadVia sends data to the stores as a node does: in chunks from the
// stored length, through stores[pick(i)] for call i, starting again from
// the length it is told (an OffsetError) when a store's length differs.
func uploadVia(t *testing.T, stores []*Store, id string, data []byte, pick func(i int) int) {
	t.Helper()
	const chunk = 1000
	off := int64(0)
	for i := 0; off < int64(len(data)); i++ {
		if i > 100*len(data)/chunk {
			t.Errorf("upload of %s makes no progress (at %d)", id, off)
			return
		}
		end := min(off+chunk, int64(len(data)))
		n, err := stores[pick(i)].Append(testMeta(id), "node-1", off, data[off:end])
		var oe *OffsetError
		switch {
		case errors.As(err, &oe):
			off = oe.Have
		case err != nil:
			t.Errorf("append %s at %d: %v", id, off, err)
			return
		default:
			off = n
		}
	}
}

// Two auth processes sharing one recordings directory (two Stores on one
// directory: their locks are flocks on files, which conflict between two
// opens in one process as between two processes). A node's upload moves
// from one to the other and back, as it does when its proxy or auth
// changes; another is uploaded through both at once (a retry racing the
// first attempt). Each recording completes through one, and both serve it
// whole and complete: neither keeps a stale state of its own.
func TestStoreSharedByTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	stores := []*Store{a, b}
	data := make([]byte, 100_000)
	rand.Read(data)

	// Through a, then b, then a again, completed through b.
	uploadVia(t, stores, "moved", data, func(i int) int { return (i / 30) % 2 })
	if err := b.Complete("moved", "node-1", int64(len(data)), sha(data), false); err != nil {
		t.Fatal(err)
	}
	// Through both at once, several times over, completed through a.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uploadVia(t, stores, "raced", data, func(i int) int { return (i/10 + g) % 2 })
		}()
	}
	wg.Wait()
	if err := a.Complete("raced", "node-1", int64(len(data)), sha(data), false); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"moved", "raced"} {
		for i, st := range stores {
			got, info := stored(t, st, id)
			if !info.Complete || info.Length != int64(len(data)) || info.SHA256 != sha(data) || !bytes.Equal(got, data) {
				t.Errorf("%s through store %d: complete %v, %d bytes (want %d), equal %v", id, i, info.Complete, info.Length, len(data), bytes.Equal(got, data))
			}
		}
	}
	list, err := a.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	if err := a.Delete("moved"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat("moved"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stat through b after a deleted it: %v", err)
	}
}
