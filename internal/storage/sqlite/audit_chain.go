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
	"github.com/warden-sh/warden/internal/storage/auditchain"
)

// auditHub is the audit state shared by every AuditLog of one Backend: the
// group commit queue and the subscribers to wake after a commit.
type auditHub struct {
	queue auditchain.Queue
	subs  auditchain.Subscribers
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
	h, loaded := auditHubs.LoadOrStore(key, &auditHub{})
	if !loaded {
		runtime.AddCleanup(b, func(k weak.Pointer[Backend]) { auditHubs.Delete(k) }, key)
	}
	return h.(*auditHub)
}

// notify wakes every subscriber after a commit; a subscriber already woken
// and not yet reading keeps its single pending wake-up.
func (h *auditHub) notify() { h.subs.Notify() }

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
