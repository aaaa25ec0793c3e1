package sqlite

import (
	"context"
	"fmt"

	"github.com/warden-sh/warden/internal/storage/auditchain"
)

// DumpAudit calls fn with every stored audit event in seq order, exactly as
// stored, and returns the log's retention checkpoints and highest seq,
// all from one snapshot: for copying the log to another driver.
func (b *Backend) DumpAudit(ctx context.Context, fn func(auditchain.StoredEvent) error) (auditchain.Dump, error) {
	var d auditchain.Dump
	if b.closed() {
		return d, fmt.Errorf("dump audit log: %w", ErrClosed)
	}
	conn, err := b.reader.Conn(ctx)
	if err != nil {
		return d, fmt.Errorf("dump audit log: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN DEFERRED`); err != nil {
		return d, fmt.Errorf("dump audit log: begin: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`) //nolint:errcheck // read-only
	rows, err := conn.QueryContext(ctx, `SELECT seq, hash, count, time FROM audit_checkpoints ORDER BY seq`)
	if err != nil {
		return d, fmt.Errorf("dump audit log: checkpoints: %w", err)
	}
	for rows.Next() {
		var c auditchain.DumpCheckpoint
		if err := rows.Scan(&c.Seq, &c.Hash, &c.Count, &c.Time); err != nil {
			rows.Close()
			return d, fmt.Errorf("dump audit log: checkpoints: %w", err)
		}
		d.Checkpoints = append(d.Checkpoints, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("dump audit log: checkpoints: %w", err)
	}
	rows, err = conn.QueryContext(ctx, `SELECT seq, id, time, event, user, node, session_id, body, prev_hash, hash
		FROM audit_events ORDER BY seq`)
	if err != nil {
		return d, fmt.Errorf("dump audit log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e auditchain.StoredEvent
		if err := rows.Scan(&e.Seq, &e.ID, &e.Time, &e.Event, &e.User, &e.Node, &e.Sess, &e.Body, &e.PrevHash, &e.Hash); err != nil {
			return d, fmt.Errorf("dump audit log: %w", err)
		}
		if err := fn(e); err != nil {
			return d, err
		}
	}
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("dump audit log: %w", err)
	}
	rows.Close()
	if err := conn.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'), 0)`).
		Scan(&d.MaxSeq); err != nil {
		return d, fmt.Errorf("dump audit log: sequence: %w", err)
	}
	return d, nil
}
