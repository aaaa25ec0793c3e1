package nodeagent

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

// eventLinger is how long the forwarder collects events before it sends
// them. Events are in the node's journal as soon as they are emitted; the
// wait turns a burst (a lock ending many sessions, a busy sftp transfer)
// into one delivery, and keeps the disk sync and the request to auth out of
// the way of the work that caused the events: cutting sessions comes
// first, accounting for them right after.
const eventLinger = 500 * time.Millisecond

// eventForwarder sends a node's audit events to auth in batches, retrying
// while auth is unreachable.
type eventForwarder struct {
	c       eventSink
	log     *slog.Logger
	mu      sync.Mutex
	queue   []audit.Event
	dropped int
	wake    chan struct{}
	// journal keeps queued events on disk (nil: memory only).
	journal *eventJournal
	// journalFailed is set once a journal write failed (logged once).
	journalFailed bool
	// queued counts the events ever queued, done those delivered or
	// dropped; doneCh is closed (and replaced) whenever done grows.
	queued, done uint64
	doneCh       chan struct{}
	// starts holds the sessions whose recording began and whose
	// session.start is not delivered yet (see waitStart).
	starts map[string]*pendingStart
}

// pendingStart is a recording waiting for its session.start to reach auth.
type pendingStart struct {
	delivered chan struct{}
	since     time.Time
}

// startWait bounds how long a recording waits for its session.start (a
// session whose process failed to start never sends one).
const startWait = time.Minute

// journalRewriteSize is when a journal whose events were mostly delivered
// is rewritten rather than left to grow until the queue empties.
const journalRewriteSize = 16 << 20

// newEventForwarder sends events to c. With a journal path, queued events
// survive a crash or restart: those left from a previous run are queued
// first.
func newEventForwarder(c eventSink, log *slog.Logger, journalPath string) (*eventForwarder, error) {
	f := &eventForwarder{c: c, log: log, wake: make(chan struct{}, 1), doneCh: make(chan struct{}),
		starts: map[string]*pendingStart{}}
	if journalPath != "" {
		j, pending, err := openEventJournal(journalPath)
		if err != nil {
			return nil, err
		}
		f.journal, f.queue, f.queued = j, pending, uint64(len(pending))
		if len(pending) > 0 {
			log.Info("audit events from a previous run will be sent", "events", len(pending))
			f.wake <- struct{}{}
		}
	}
	return f, nil
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
	var line []byte
	if f.journal != nil { // set at construction; encoded outside the lock
		var err error
		if line, err = journalLine(ev); err != nil {
			return err
		}
	}
	f.mu.Lock()
	if len(f.queue) >= maxQueuedEvents {
		f.queue = f.queue[1:]
		f.dropped++
		f.advanceLocked(1, nil)
	}
	f.queue = append(f.queue, ev)
	f.queued++
	if f.journal != nil {
		if err := f.journal.appendLine(line); err != nil {
			f.journalErrorLocked("write", err)
		}
	}
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
			select {
			case <-ctx.Done():
				return
			case <-time.After(eventLinger):
			}
		case <-time.After(time.Second):
		}
		for f.send(ctx) != nil && ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(jitter(backoff)):
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
		f.syncJournal()
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
		f.advanceLocked(uint64(n), batch)
		f.compactLocked()
		f.mu.Unlock()
	}
}

// syncJournal makes the journal durable, without holding f.mu during the
// fsync (Emit must not wait for the disk). Only send's goroutine replaces
// or closes the journal file, so it may use it unlocked here.
func (f *eventForwarder) syncJournal() {
	if f.journal == nil {
		return
	}
	if err := f.journal.f.Sync(); err != nil {
		f.mu.Lock()
		f.journalErrorLocked("sync", err)
		f.mu.Unlock()
	}
}

// journalErrorLocked logs the first journal failure. f.mu is held.
func (f *eventForwarder) journalErrorLocked(op string, err error) {
	if !f.journalFailed {
		f.journalFailed = true
		f.log.Error("audit journal "+op+" failed; queued events are kept in memory only", "err", err)
	}
}

// compactLocked empties the journal once everything is delivered, or
// rewrites a large one holding mostly delivered events. f.mu is held.
func (f *eventForwarder) compactLocked() {
	if f.journal == nil {
		return
	}
	var err error
	switch {
	case len(f.queue) == 0:
		err = f.journal.reset()
	case f.journal.size > journalRewriteSize && len(f.queue) < maxQueuedEvents/2:
		err = f.journal.rewrite(f.queue)
	}
	if err != nil {
		f.log.Warn("compacting the audit journal failed", "err", err)
	}
}

// close releases the journal.
func (f *eventForwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.journal != nil {
		f.journal.close()
		f.journal = nil
	}
}

// advanceLocked records that n more events left the queue (delivered:
// sent, or dropped) and releases the recordings waiting for a
// session.start in sent. f.mu is held.
func (f *eventForwarder) advanceLocked(n uint64, sent []audit.Event) {
	f.done += n
	close(f.doneCh)
	f.doneCh = make(chan struct{})
	for _, ev := range sent {
		if p := f.starts[ev.SessionID]; p != nil && ev.Event == audit.SessionStart {
			close(p.delivered)
			delete(f.starts, ev.SessionID)
		}
	}
}

// expectStart notes that session id's recording began: its first bytes
// wait (waitStart) until the session's session.start, emitted a moment
// later, has reached auth.
func (f *eventForwarder) expectStart(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts[id] = &pendingStart{delivered: make(chan struct{}), since: time.Now()}
}

// waitStart returns once auth has the session.start of session id: auth
// refuses the recording of a session it has no record of. A session this
// process did not see begin (its recording resumed after a restart) waits
// for every event queued so far, those from the journal included. A
// session.start that does not come within startWait (the session's process
// failed to start) is waited for no longer: auth then decides.
func (f *eventForwarder) waitStart(ctx context.Context, id string) error {
	f.mu.Lock()
	p := f.starts[id]
	target := f.queued
	f.mu.Unlock()
	if p != nil {
		t := time.NewTimer(startWait - time.Since(p.since))
		defer t.Stop()
		select {
		case <-p.delivered:
		case <-t.C:
			f.mu.Lock()
			delete(f.starts, id)
			f.mu.Unlock()
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	for {
		f.mu.Lock()
		done, ch := f.done >= target, f.doneCh
		f.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *eventForwarder) flush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = f.send(ctx)
}
