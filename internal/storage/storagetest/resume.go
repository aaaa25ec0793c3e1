package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/storage"
)

// Interruptible is a backend whose watches depend on connections that can
// drop (a database server restarts, a network is cut). Interrupt must
// break every connection the backend holds, as the server side would.
type Interruptible interface {
	storage.Backend
	Interrupt(t testing.TB)
}

// ResumableFactory opens a fresh Interruptible backend (as Factory does).
type ResumableFactory func(t *testing.T, now func() time.Time) Interruptible

// RunWatchResumption checks that a watch outlives its connections: events
// written while the backend reconnects are all delivered, in order, once
// each, without the consumer doing anything. Every driver whose watch
// crosses a network must pass it (SQLite's, in one process, has nothing to
// interrupt). A driver that cannot resume (the changes it needs are gone)
// must close the channel instead, never skip events silently: that case is
// driver-specific and tested with the driver.
func RunWatchResumption(t *testing.T, f ResumableFactory) {
	t.Run("WatchResumesAfterInterrupt", func(t *testing.T) {
		clock := NewClock(epoch)
		b := f(t, clock.Now)
		e := &env{t: t, b: b, clock: clock, ctx: t.Context()}
		ch := mustWatch(e, e.ctx, "/r/")
		first := mustPut(e, "/r/0", "0")
		expectEvent(e, ch, storage.EventPut, "/r/0", first.Revision)
		for round := range 3 {
			b.Interrupt(t)
			var want []storage.Item
			for i := range 10 {
				key := fmt.Sprintf("/r/%d/%d", round, i)
				it, err := b.Put(e.ctx, storage.Item{Key: key, Value: []byte("v")})
				if err != nil {
					t.Fatalf("round %d: Put %s after the interrupt: %v", round, key, err)
				}
				want = append(want, it)
			}
			if err := b.Delete(e.ctx, want[0].Key); err != nil {
				t.Fatal(err)
			}
			for _, it := range want {
				expectEvent(e, ch, storage.EventPut, it.Key, it.Revision)
			}
			if ev := recvEvent(e, ch); ev.Type != storage.EventDelete || ev.Item.Key != want[0].Key {
				t.Fatalf("round %d: got %+v, want the delete of %s", round, ev, want[0].Key)
			}
		}
		expectNoEvent(e, ch)
	})
}
