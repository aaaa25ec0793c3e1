package sqlite

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/storage/auditchain"
)

// TestAuditSubscribeBacklogThenLive subscribes while writers are emitting:
// the subscriber must see every event after its start exactly once, in seq
// order, across the backlog (several pages) and the live tail.
func TestAuditSubscribeBacklogThenLive(t *testing.T) {
	b := openTest(t, Config{})
	log := b.AuditLog()
	ctx := t.Context()
	const backlog, writers, each, after = 3*auditchain.SubscribePage + 17, 4, 50, 100
	batch := make([]audit.Event, backlog)
	for i := range batch {
		batch[i] = audit.Event{Event: audit.Exec, ID: fmt.Sprintf("b%d", i)}
	}
	if err := log.EmitBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range each {
				var err error
				if i%10 == 0 {
					err = log.EmitBatch(ctx, []audit.Event{{Event: audit.Exec}, {Event: audit.Exec}})
				} else {
					err = b.AuditLog().Emit(ctx, audit.Event{Event: audit.Exec, User: fmt.Sprintf("w%d", w)})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	close(start) // writers race the subscription
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := log.Subscribe(sctx, after)
	if err != nil {
		t.Fatal(err)
	}
	total := backlog + writers*(each+each/10)
	want := int64(after + 1)
	timeout := time.After(patience.Left(t))
	for want <= int64(total) {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed at seq %d", want)
			}
			if ev.Seq != want {
				t.Fatalf("got seq %d, want %d (gap or duplicate)", ev.Seq, want)
			}
			if ev.Hash == "" {
				t.Fatalf("event seq %d has no hash", ev.Seq)
			}
			want++
		case <-timeout:
			t.Fatalf("timed out waiting for seq %d of %d", want, total)
		}
	}
	wg.Wait()
	select {
	case ev := <-ch:
		t.Fatalf("unexpected extra event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
	// One more live event arrives; then cancelling closes the channel.
	if err := log.Emit(ctx, audit.Event{Event: audit.Exec, ID: "last"}); err != nil {
		t.Fatal(err)
	}
	if ev := <-ch; ev.ID != "last" || ev.Seq != int64(total+1) {
		t.Fatalf("live event = %+v", ev)
	}
	cancel()
	for range ch {
	}
}

func TestAuditSubscribeEndsOnClose(t *testing.T) {
	b := openTest(t, Config{})
	log := b.AuditLog()
	if err := log.Emit(t.Context(), audit.Event{Event: audit.Exec}); err != nil {
		t.Fatal(err)
	}
	ch, err := log.Subscribe(t.Context(), -5) // negative: from the start
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-ch; ev.Seq != 1 {
		t.Fatalf("first event seq %d", ev.Seq)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after Close")
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("channel not closed by Close")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := openTest(t, Config{}).AuditLog().Subscribe(ctx, 0); err == nil {
		t.Error("Subscribe with a cancelled context succeeded")
	}
}
