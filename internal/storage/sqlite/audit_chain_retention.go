package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/auditchain"
)

// DeleteBefore deletes the events older than t and returns how many it
// deleted. It deletes a prefix of the log (by seq): every event up to the
// first one whose time is not before t, so an event emitted late with an
// old timestamp is kept until everything before it is old enough.
//
// In the same transaction it records a checkpoint (the seq and hash of the
// last event deleted) that Verify starts from, and appends an
// audit.Retention event naming that checkpoint, so a forged or altered
// checkpoint is detected. Deleting nothing writes nothing.
func (a *AuditLog) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	if a.b.closed() {
		return 0, fmt.Errorf("audit retention: %w", ErrClosed)
	}
	tx, err := a.b.writer.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("audit retention: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	// The scan in seq order stops at the first event kept: it reads what
	// is about to be deleted, no more.
	var firstKept int64
	err = tx.QueryRowContext(ctx, `SELECT seq FROM audit_events NOT INDEXED WHERE time >= ? ORDER BY seq LIMIT 1`, t.UnixNano()).Scan(&firstKept)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		firstKept = -1 // every event is older
	case err != nil:
		return 0, fmt.Errorf("audit retention: find cutoff: %w", err)
	}
	cond, args := `seq < ?`, []any{firstKept}
	if firstKept < 0 {
		cond, args = `1`, nil
	}
	var (
		last  sql.NullInt64
		count int64
	)
	if err := tx.QueryRowContext(ctx, `SELECT max(seq), count(*) FROM audit_events WHERE `+cond, args...).
		Scan(&last, &count); err != nil {
		return 0, fmt.Errorf("audit retention: count: %w", err)
	}
	if !last.Valid || count == 0 {
		return 0, nil
	}
	var hash []byte
	if err := tx.QueryRowContext(ctx, `SELECT hash FROM audit_events WHERE seq = ?`, last.Int64).Scan(&hash); err != nil {
		return 0, fmt.Errorf("audit retention: read last hash: %w", err)
	}
	if hash == nil {
		return 0, fmt.Errorf("audit retention: event seq %d has no hash: run Verify", last.Int64)
	}
	now := a.b.now().UTC()
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, hash, time, count) VALUES (?, ?, ?, ?)`,
		last.Int64, hash, now.UnixNano(), count); err != nil {
		return 0, fmt.Errorf("audit retention: write checkpoint: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE seq <= ?`, last.Int64); err != nil {
		return 0, fmt.Errorf("audit retention: delete: %w", err)
	}
	p, err := a.prepare(audit.Event{Event: audit.Retention, Time: now, Success: true, Fields: map[string]any{
		"before":          t.UTC().Format(time.RFC3339Nano),
		"deleted":         count,
		"checkpoint_seq":  last.Int64,
		"checkpoint_hash": hex.EncodeToString(hash),
	}})
	if err != nil {
		return 0, fmt.Errorf("audit retention: %w", err)
	}
	if _, err := a.insertTx(ctx, tx, []auditchain.Prepared{p}); err != nil {
		return 0, fmt.Errorf("audit retention: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("audit retention: commit: %w", err)
	}
	a.hub.notify()
	a.b.log.Info("audit retention", "deleted", count, "checkpoint_seq", last.Int64, "before", t)
	return count, nil
}
