package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"weak"

	"github.com/warden-sh/warden/internal/audit"
)

// maxGroup caps how many queued events one group commit writes (a single
// larger EmitBatch is still written whole).
const maxGroup = 1024

// auditHub is the audit state shared by every AuditLog of one Backend: the
// group commit queue and the subscribers to wake after a commit.
type auditHub struct {
	mu      sync.Mutex
	pending []*emitReq
	leading bool // a goroutine is committing pending requests
	subs    map[chan struct{}]struct{}
}

// auditHubs maps a Backend to its hub. AuditLog values are cheap handles
// made on demand (b.AuditLog()), yet Emits from any of them must share one
// queue and wake every subscriber. The key is weak and the entry removed
// when the Backend is garbage collected, so closed backends do not leak.
var auditHubs sync.Map // weak.Pointer[Backend] -> *auditHub

func hubFor(b *Backend) *auditHub {
	key := weak.Make(b)
	if h, ok := auditHubs.Load(key); ok {
		return h.(*auditHub)
	}
	h, loaded := auditHubs.LoadOrStore(key, &auditHub{subs: make(map[chan struct{}]struct{})})
	if !loaded {
		runtime.AddCleanup(b, func(k weak.Pointer[Backend]) { auditHubs.Delete(k) }, key)
	}
	return h.(*auditHub)
}

// notify wakes every subscriber after a commit; a subscriber already woken
// and not yet reading keeps its single pending wake-up.
func (h *auditHub) notify() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// emitReq is one Emit or EmitBatch: its events are committed together or
// not at all.
type emitReq struct {
	ps   []prepared
	done chan emitResult // buffered: the committer never blocks on it
}

type emitResult struct {
	evs []audit.Event
	err error
}

// groupAppend queues ps and waits until they are committed. The first
// caller to find no commit in progress commits everything queued so far in
// one transaction (one fsync) on its own goroutine; Emits and EmitBatches
// arriving meanwhile queue up and are committed by a goroutine it starts,
// so a busy log is written in batches without a fixed flush delay and an
// idle one without waiting.
func (a *AuditLog) groupAppend(ctx context.Context, ps []prepared) ([]audit.Event, error) {
	req := &emitReq{ps: ps, done: make(chan emitResult, 1)}
	h := a.hub
	h.mu.Lock()
	h.pending = append(h.pending, req)
	lead := !h.leading
	h.leading = true
	h.mu.Unlock()
	if lead {
		a.flush()
	}
	select {
	case r := <-req.done:
		return r.evs, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("emit audit event %q id %q: %w", ps[0].ev.Event, ps[0].ev.ID, ctx.Err())
	}
}

// flush commits one group of queued requests (up to maxGroup events, at
// least one request); if more queued meanwhile it hands the next group to a
// new goroutine, so no caller commits for others indefinitely. Called with
// h.leading set and h.pending non-empty.
func (a *AuditLog) flush() {
	h := a.hub
	h.mu.Lock()
	n, events := 0, 0
	for n < len(h.pending) && (n == 0 || events+len(h.pending[n].ps) <= maxGroup) {
		events += len(h.pending[n].ps)
		n++
	}
	group := make([]*emitReq, n)
	copy(group, h.pending)
	h.pending = append(h.pending[:0], h.pending[n:]...)
	h.mu.Unlock()

	a.commitGroup(group)

	h.mu.Lock()
	more := len(h.pending) > 0
	h.leading = more
	h.mu.Unlock()
	if more {
		go a.flush()
	}
}

// commitGroup writes group in one transaction. If that fails, each request
// is retried alone so one bad event cannot fail the others. The transaction
// does not use any caller's context: callers share it.
func (a *AuditLog) commitGroup(group []*emitReq) {
	ctx := context.Background()
	var ps []prepared
	for _, r := range group {
		ps = append(ps, r.ps...)
	}
	out, err := a.commit(ctx, ps)
	if err == nil {
		for _, r := range group {
			r.done <- emitResult{evs: out[:len(r.ps):len(r.ps)]}
			out = out[len(r.ps):]
		}
		return
	}
	if len(group) == 1 || a.b.closed() {
		for _, r := range group {
			r.done <- emitResult{err: err}
		}
		return
	}
	for _, r := range group {
		out, err := a.commit(ctx, r.ps)
		r.done <- emitResult{evs: out, err: err}
	}
}

// tail returns the seq and hash the next event chains to: the last event's,
// or the latest retention checkpoint's when every event was deleted, or
// (0, nil) for an empty log.
//
// A last event without a hash was damaged (its hash cleared): the chain
// continues from the damage with an empty previous hash, and Verify reports
// the unchained row. Rows are never re-chained here: re-chaining would let
// anyone who can clear the hash columns make a forged log verify. (Rows
// written before the chain existed were chained once, by the schema
// migration that added it: see chainLegacyRows.)
func (a *AuditLog) tail(ctx context.Context, tx *sql.Tx) (int64, []byte, error) {
	var (
		seq  int64
		hash []byte
	)
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil, nil
		}
		if err != nil {
			return 0, nil, fmt.Errorf("read audit checkpoint: %w", err)
		}
		return seq, hash, nil
	case err != nil:
		return 0, nil, fmt.Errorf("read audit chain tail: %w", err)
	case hash == nil:
		a.b.log.Error("the last audit event has no hash: the log was tampered with (run warden audit verify)", "seq", seq)
	}
	return seq, hash, nil
}

// chainLegacyRows chains every event of a log written before hashes existed
// (schema version 2), rewriting each body in canonical form. It runs once,
// inside the migration to schema version 3, never afterwards.
func chainLegacyRows(ctx context.Context, tx *sql.Tx) error {
	const page = 1000
	var (
		after int64
		prev  []byte
	)
	type row struct {
		seq  int64
		body []byte
	}
	for {
		rows, err := tx.QueryContext(ctx, `SELECT seq, body FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`, after, page)
		if err != nil {
			return fmt.Errorf("chain legacy audit events: %w", err)
		}
		var batch []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.seq, &r.body); err != nil {
				rows.Close()
				return fmt.Errorf("chain legacy audit events: %w", err)
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("chain legacy audit events: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		for _, r := range batch {
			var ev audit.Event
			if err := json.Unmarshal(r.body, &ev); err != nil {
				return fmt.Errorf("chain legacy audit event seq %d: %w", r.seq, err)
			}
			body, err := audit.Canonical(ev)
			if err != nil {
				return fmt.Errorf("chain legacy audit event seq %d: %w", r.seq, err)
			}
			hash := audit.ChainHash(prev, body)
			if _, err := tx.ExecContext(ctx, `UPDATE audit_events SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?`,
				body, prev, hash, r.seq); err != nil {
				return fmt.Errorf("chain legacy audit event seq %d: %w", r.seq, err)
			}
			prev, after = hash, r.seq
		}
	}
}
