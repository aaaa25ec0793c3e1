//go:build integration

package postgres

import (
	"fmt"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/storage/postgres/pgtest"
)

func recv(t *testing.T, ch <-chan storage.Event) storage.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(patience.Left(t)):
		t.Fatal("no event")
	}
	return storage.Event{}
}

// A watch on one instance sees the writes of another, through a cut of
// every connection of the watching instance, nothing missed. The long poll
// interval shows the wake-up comes from NOTIFY on the re-established
// listener, not from polling.
func TestWatchAcrossInstancesThroughInterrupt(t *testing.T) {
	db := pgtest.New(t)
	watcherSide := openTest(t, db, Config{PollInterval: time.Hour})
	writer := openTest(t, db, Config{})
	ch, err := watcherSide.Watch(t.Context(), "/x/")
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		start := time.Now()
		it, err := writer.Put(t.Context(), storage.Item{Key: fmt.Sprintf("/x/%d", round), Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		if ev := recv(t, ch); ev.Item.Revision != it.Revision {
			t.Fatalf("got %+v, want revision %d", ev, it.Revision)
		}
		t.Logf("round %d: write on one instance to event on the other: %v", round, time.Since(start))
		db.TerminateConnections(t)
		// Written while the watching instance has no connection at all.
		var want []int64
		for i := range 5 {
			it, err := writer.Put(t.Context(), storage.Item{Key: fmt.Sprintf("/x/%d/%d", round, i), Value: []byte("v")})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, it.Revision)
		}
		for _, rev := range want {
			if ev := recv(t, ch); ev.Item.Revision != rev {
				t.Fatalf("round %d: got %+v, want revision %d", round, ev, rev)
			}
		}
	}
}

// A watcher whose changes were pruned before it could read them is told to
// resync (its channel closes); it never silently skips them.
func TestWatchTooFarBehindIsClosed(t *testing.T) {
	b := openTest(t, nil, Config{ChangeKeep: 3, ReapInterval: time.Hour})
	ch, err := b.Watch(t.Context(), "/")
	if err != nil {
		t.Fatal(err)
	}
	resume := b.PauseWatch()
	for i := range 10 {
		if _, err := b.Put(t.Context(), storage.Item{Key: fmt.Sprint("/k", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Reap(t.Context()); err != nil { // prunes all but 3 changes
		t.Fatal(err)
	}
	resume()
	select {
	case ev, ok := <-ch:
		if ok {
			t.Fatalf("got %+v: a watcher behind pruned changes must be closed", ev)
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("watch not closed")
	}
	// A new watch works from there.
	ch2, err := b.Watch(t.Context(), "/")
	if err != nil {
		t.Fatal(err)
	}
	it, err := b.Put(t.Context(), storage.Item{Key: "/after", Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, ch2); ev.Item.Revision != it.Revision {
		t.Fatalf("got %+v", ev)
	}
}

// An audit subscriber on one instance gets every event appended through
// another, through a cut of its connections, in seq order.
func TestAuditSubscribeAcrossInstancesThroughInterrupt(t *testing.T) {
	db := pgtest.New(t)
	reader := openTest(t, db, Config{PollInterval: time.Hour})
	writer := openTest(t, db, Config{}).AuditLog()
	ch, err := reader.AuditLog().Subscribe(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	next := int64(1)
	expect := func(n int) {
		t.Helper()
		for range n {
			select {
			case ev, ok := <-ch:
				if !ok || ev.Seq != next {
					t.Fatalf("got seq %d (open %v), want %d", ev.Seq, ok, next)
				}
				next++
			case <-time.After(patience.Left(t)):
				t.Fatalf("no event seq %d", next)
			}
		}
	}
	for round := range 3 {
		if err := writer.Emit(t.Context(), audit.Event{Event: audit.Exec}); err != nil {
			t.Fatal(err)
		}
		expect(1)
		db.TerminateConnections(t)
		for range 5 {
			if err := writer.Emit(t.Context(), audit.Event{Event: audit.Exec, Fields: map[string]any{"round": round}}); err != nil {
				t.Fatal(err)
			}
		}
		expect(5)
	}
}
