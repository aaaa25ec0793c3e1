// Package sqlitetest does to a Warden SQLite database what its owner could,
// for tests that check such tampering is detected.
package sqlitetest

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/warden-sh/warden/internal/audit"
)

// RechainAudit recomputes every hash of the audit log from its first event,
// as the owner of the database file can after editing events: the plain
// hash chain then verifies again, and only signed checkpoints can tell.
func RechainAudit(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT seq, body FROM audit_events ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("read the audit log: %w", err)
	}
	type row struct {
		seq  int64
		body []byte
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.seq, &r.body); err != nil {
			rows.Close()
			return err
		}
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var prev []byte
	for _, r := range all {
		h := audit.ChainHash(prev, r.body)
		if _, err := db.ExecContext(ctx, `UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?`, prev, h, r.seq); err != nil {
			return fmt.Errorf("rechain event %d: %w", r.seq, err)
		}
		prev = h
	}
	return nil
}
