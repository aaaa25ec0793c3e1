package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
)

// flakyAudit stores batches; it fails the first `fails` attempts, refuses
// any batch holding an event named "bad" as invalid, and while gate is
// held it waits (storage stalled).
type flakyAudit struct {
	fails   atomic.Int64
	gate    sync.RWMutex
	mu      sync.Mutex
	stored  map[string]int
	batches int
}

func (f *flakyAudit) Emit(ctx context.Context, ev audit.Event) error {
	return f.EmitBatch(ctx, []audit.Event{ev})
}

func (f *flakyAudit) EmitBatch(_ context.Context, evs []audit.Event) error {
	f.gate.RLock()
	defer f.gate.RUnlock()
	if f.fails.Add(-1) >= 0 {
		return errors.New("database is locked")
	}
	for _, ev := range evs {
		if ev.Event == "bad" {
			return fmt.Errorf("%w: event fields too large", auth.ErrBadRequest)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches++
	for _, ev := range evs {
		f.stored[ev.User]++
	}
	return nil
}

func (f *flakyAudit) count() (events, batches int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.stored), f.batches
}

// TestKubeAuditLosesNothing: kube.request events are stored in batches;
// failed batches are retried, a batch with an invalid event is split, a
// stalled storage holds requests back (the queue is bounded) instead of
// losing events, and what is queued at shutdown is stored.
func TestKubeAuditLosesNothing(t *testing.T) {
	fa := &flakyAudit{stored: map[string]int{}}
	fa.fails.Store(3)
	e := newProxyEnv(t, func(c *Config) { c.Audit = fa })
	const n = 3 * kubeAuditQueue
	fa.gate.Lock() // storage stalled
	release := sync.OnceFunc(fa.gate.Unlock)
	defer release() // (a failure must not leave the writer stuck)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				e.s.kubeAudit(audit.Event{Event: audit.KubeRequest, User: fmt.Sprint("u", i)})
				sent.Add(1)
			}
		}()
	}
	e.s.kubeAudit(audit.Event{Event: "bad", User: "bad"})
	// The queue fills, then the senders wait.
	for deadline := time.Now().Add(10 * time.Second); len(e.s.kube.events) < kubeAuditQueue; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the queue did not fill: %d", len(e.s.kube.events))
		}
	}
	if s := sent.Load(); s >= n {
		t.Fatalf("all %d events were accepted while the storage stalled (queue %d)", s, kubeAuditQueue)
	}
	release()
	wg.Wait()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got, _ := fa.count(); got == n {
			break
		}
		if time.Now().After(deadline) {
			got, _ := fa.count()
			t.Fatalf("stored %d of %d events", got, n)
		}
	}
	_, batches := fa.count()
	if batches > n/10 {
		t.Fatalf("%d events in %d batches", n, batches)
	}

	// At shutdown, what is queued is stored.
	fa.gate.Lock()
	for i := range 100 {
		e.s.kubeAudit(audit.Event{Event: audit.KubeRequest, User: fmt.Sprint("late", i)})
	}
	fa.gate.Unlock()
	e.s.Close()
	if got, _ := fa.count(); got != n+100 {
		t.Fatalf("stored %d of %d events after shutdown", got, n+100)
	}
}
