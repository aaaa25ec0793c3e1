package auditchain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/audit"
)

// MaxGroup caps how many queued events one group commit writes (a single
// larger EmitBatch is still written whole).
const MaxGroup = 1024

// Prepared is an event with its defaults filled in and its canonical body.
type Prepared struct {
	Ev    audit.Event
	Body  []byte
	NewID bool // ID generated here: it cannot be stored yet
}

// Prepare validates ev, fills in its ID and Time (now's when zero, in
// UTC) and encodes its body. It runs in the caller's goroutine, outside
// any write lock.
func Prepare(ev audit.Event, now func() time.Time) (Prepared, error) {
	if ev.Event == "" {
		return Prepared{}, errors.New("empty event name")
	}
	newID := ev.ID == ""
	if newID {
		var r [16]byte
		if _, err := rand.Read(r[:]); err != nil {
			return Prepared{}, fmt.Errorf("%q: event id: %w", ev.Event, err)
		}
		ev.ID = hex.EncodeToString(r[:])
	}
	if ev.Time.IsZero() {
		ev.Time = now()
	}
	ev.Time = ev.Time.UTC()
	ev.Seq, ev.PrevHash, ev.Hash = 0, "", ""
	body, err := audit.Canonical(ev)
	if err != nil {
		return Prepared{}, err
	}
	return Prepared{Ev: ev, Body: body, NewID: newID}, nil
}

// Queue is the group commit queue shared by every handle on one log.
type Queue struct {
	mu      sync.Mutex
	pending []*emitReq
	leading bool // a goroutine is committing pending requests
}

// emitReq is one Emit or EmitBatch: its events are committed together or
// not at all.
type emitReq struct {
	ps   []Prepared
	done chan emitResult // buffered: the committer never blocks on it
}

type emitResult struct {
	evs []audit.Event
	err error
}

// Appender is the driver-independent half of an audit.Store's Emit,
// Append and EmitBatch: it prepares events and commits them in groups
// through Commit, the driver's one-transaction write.
type Appender struct {
	Queue     *Queue
	Now       func() time.Time // the backend clock, for events without a Time
	Closed    func() bool
	ErrClosed error
	// Commit stores ps in one transaction and returns them as stored.
	Commit func(ctx context.Context, ps []Prepared) ([]audit.Event, error)
}

// Emit stores ev (see Append).
func (a Appender) Emit(ctx context.Context, ev audit.Event) error {
	_, err := a.Append(ctx, ev)
	return err
}

// Append stores ev and returns it as stored, with its ID, Time, Seq and
// hashes. An empty ID gets a random one, a zero Time the backend clock's
// time. Concurrent appends share one transaction (group commit). If ctx
// ends first the event may still be stored: retry with the same ID,
// which is idempotent.
func (a Appender) Append(ctx context.Context, ev audit.Event) (audit.Event, error) {
	if a.Closed() {
		return audit.Event{}, fmt.Errorf("emit audit event: %w", a.ErrClosed)
	}
	p, err := Prepare(ev, a.Now)
	if err != nil {
		return audit.Event{}, fmt.Errorf("emit audit event: %w", err)
	}
	evs, err := a.groupAppend(ctx, []Prepared{p})
	if err != nil {
		return audit.Event{}, err
	}
	return evs[0], nil
}

// EmitBatch stores evs in one transaction: all or none. Fields are filled
// in as by Append. Concurrent batches and appends share group commits.
func (a Appender) EmitBatch(ctx context.Context, evs []audit.Event) error {
	if len(evs) == 0 {
		return nil
	}
	if a.Closed() {
		return fmt.Errorf("emit audit events: %w", a.ErrClosed)
	}
	ps := make([]Prepared, len(evs))
	for i, ev := range evs {
		p, err := Prepare(ev, a.Now)
		if err != nil {
			return fmt.Errorf("emit audit event %d: %w", i, err)
		}
		ps[i] = p
	}
	_, err := a.groupAppend(ctx, ps)
	return err
}

// groupAppend queues ps and waits until they are committed. The first
// caller to find no commit in progress commits everything queued so far in
// one transaction on its own goroutine; appends arriving meanwhile queue
// up and are committed by a goroutine it starts, so a busy log is written
// in batches without a fixed flush delay and an idle one without waiting.
func (a Appender) groupAppend(ctx context.Context, ps []Prepared) ([]audit.Event, error) {
	req := &emitReq{ps: ps, done: make(chan emitResult, 1)}
	q := a.Queue
	q.mu.Lock()
	q.pending = append(q.pending, req)
	lead := !q.leading
	q.leading = true
	q.mu.Unlock()
	if lead {
		a.flush()
	}
	select {
	case r := <-req.done:
		return r.evs, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("emit audit event %q id %q: %w", ps[0].Ev.Event, ps[0].Ev.ID, ctx.Err())
	}
}

// flush commits one group of queued requests (up to MaxGroup events, at
// least one request); if more queued meanwhile it hands the next group to a
// new goroutine, so no caller commits for others indefinitely. Called with
// q.leading set and q.pending non-empty.
func (a Appender) flush() {
	q := a.Queue
	q.mu.Lock()
	n, events := 0, 0
	for n < len(q.pending) && (n == 0 || events+len(q.pending[n].ps) <= MaxGroup) {
		events += len(q.pending[n].ps)
		n++
	}
	group := make([]*emitReq, n)
	copy(group, q.pending)
	q.pending = append(q.pending[:0], q.pending[n:]...)
	q.mu.Unlock()

	a.commitGroup(group)

	q.mu.Lock()
	more := len(q.pending) > 0
	q.leading = more
	q.mu.Unlock()
	if more {
		go a.flush()
	}
}

// commitGroup writes group in one transaction. If that fails, each request
// is retried alone so one bad event cannot fail the others. The transaction
// does not use any caller's context: callers share it.
func (a Appender) commitGroup(group []*emitReq) {
	ctx := context.Background()
	var ps []Prepared
	for _, r := range group {
		ps = append(ps, r.ps...)
	}
	out, err := a.Commit(ctx, ps)
	if err == nil {
		for _, r := range group {
			r.done <- emitResult{evs: out[:len(r.ps):len(r.ps)]}
			out = out[len(r.ps):]
		}
		return
	}
	if len(group) == 1 || a.Closed() {
		for _, r := range group {
			r.done <- emitResult{err: err}
		}
		return
	}
	for _, r := range group {
		// The group's transaction may have committed after all (its
		// reply lost with the connection): look every id up.
		for i := range r.ps {
			r.ps[i].NewID = false
		}
		out, err := a.Commit(ctx, r.ps)
		r.done <- emitResult{evs: out, err: err}
	}
}
