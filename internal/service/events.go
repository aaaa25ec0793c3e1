package service

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/identity"
)

// maxQueuedEvents bounds memory if auth is unreachable for long.
const maxQueuedEvents = 100_000

// eventForwarder sends a node's audit events to auth in batches, retrying
// while auth is unreachable.
type eventForwarder struct {
	c       eventSink
	log     *slog.Logger
	mu      sync.Mutex
	queue   []audit.Event
	dropped int
	wake    chan struct{}
}

func newEventForwarder(c eventSink, log *slog.Logger) *eventForwarder {
	return &eventForwarder{c: c, log: log, wake: make(chan struct{}, 1)}
}

// eventSink delivers a batch of a node's audit events to auth: the API
// client, or auth itself in the same process.
type eventSink interface {
	EmitEvents(ctx context.Context, evs []audit.Event) error
}

// Emit queues an event; it never blocks a session.
func (f *eventForwarder) Emit(_ context.Context, ev audit.Event) error {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if ev.ID == "" {
		// Retries after a lost response must not duplicate the event: auth
		// stores each id once.
		id, err := identity.NewToken()
		if err != nil {
			return err
		}
		ev.ID = id[:32]
	}
	f.mu.Lock()
	if len(f.queue) >= maxQueuedEvents {
		f.queue = f.queue[1:]
		f.dropped++
	}
	f.queue = append(f.queue, ev)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

func (f *eventForwarder) run(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-time.After(time.Second):
		}
		for f.send(ctx) != nil && ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
		backoff = 200 * time.Millisecond
	}
}

// send delivers everything queued, in batches; on failure the events stay
// queued in order.
func (f *eventForwarder) send(ctx context.Context) error {
	for {
		f.mu.Lock()
		n := min(len(f.queue), 500)
		batch := append([]audit.Event(nil), f.queue[:n]...)
		dropped := f.dropped
		f.mu.Unlock()
		if n == 0 {
			return nil
		}
		if dropped > 0 {
			f.log.Error("audit events were dropped because auth was unreachable too long", "dropped", dropped)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := f.c.EmitEvents(sctx, batch)
		cancel()
		if err != nil {
			f.log.Warn("sending audit events failed; will retry", "err", err, "queued", n)
			return err
		}
		f.mu.Lock()
		f.queue = f.queue[n:]
		f.dropped = 0
		f.mu.Unlock()
	}
}

func (f *eventForwarder) flush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = f.send(ctx)
}
