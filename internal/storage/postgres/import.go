package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/warden-sh/warden/internal/storage/auditchain"
)

// ErrNotEmpty is returned by BeginAuditImport when the database already
// holds audit events.
var ErrNotEmpty = errors.New("the database is not empty")

// Contents counts what the database holds: live and expired items, audit
// events and retention checkpoints.
func (b *Backend) Contents(ctx context.Context) (items, events, checkpoints int64, err error) {
	err = b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM kv), (SELECT count(*) FROM audit_events),
		(SELECT count(*) FROM audit_checkpoints) + (SELECT CASE WHEN seq > 0 THEN 1 ELSE 0 END FROM audit_tail WHERE id = 1)`).
		Scan(&items, &events, &checkpoints)
	if err != nil {
		err = fmt.Errorf("count database contents: %w", err)
	}
	return items, events, checkpoints, err
}

// Wipe deletes every item, change and audit event, for an import that
// replaces what a database held. Revisions keep increasing. Nothing else
// may use the database meanwhile.
func (b *Backend) Wipe(ctx context.Context) error {
	_, err := b.pool.Exec(ctx, `BEGIN;
		LOCK TABLE kv_revision, audit_tail;
		TRUNCATE kv, kv_changes, audit_events, audit_checkpoints;
		UPDATE audit_tail SET seq = 0, hash = NULL;
		COMMIT`)
	if err != nil {
		return fmt.Errorf("wipe database: %w", err)
	}
	b.poke()
	return nil
}

// AuditImport copies an audit log into an empty database row by row, with
// its seqs and hashes unchanged, in one transaction (see BeginAuditImport).
type AuditImport struct {
	b       *Backend
	tx      pgx.Tx
	pending []auditchain.StoredEvent
	last    *auditchain.StoredEvent
	n       int64
}

// BeginAuditImport starts an import; the chain's tail stays locked (no
// append can interleave) until Finish or Abort. It fails with ErrNotEmpty
// if the log holds anything.
func (b *Backend) BeginAuditImport(ctx context.Context) (*AuditImport, error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("import audit log: %w", err)
	}
	seq, _, err := lockTail(ctx, tx)
	if err != nil {
		tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // failed anyway
		return nil, fmt.Errorf("import audit log: %w", err)
	}
	var rows int64
	if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_events) + (SELECT count(*) FROM audit_checkpoints)`).Scan(&rows); err != nil {
		tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // failed anyway
		return nil, fmt.Errorf("import audit log: %w", err)
	}
	if seq != 0 || rows != 0 {
		tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // nothing written
		return nil, fmt.Errorf("import audit log: %w (%d audit rows, last seq %d)", ErrNotEmpty, rows, seq)
	}
	return &AuditImport{b: b, tx: tx}, nil
}

// Add queues one event; events must come in seq order.
func (im *AuditImport) Add(ctx context.Context, e auditchain.StoredEvent) error {
	if im.last != nil && e.Seq <= im.last.Seq {
		return fmt.Errorf("import audit log: seq %d after %d", e.Seq, im.last.Seq)
	}
	im.pending = append(im.pending, e)
	im.last = &im.pending[len(im.pending)-1]
	if len(im.pending) >= 2000 {
		return im.flush(ctx)
	}
	return nil
}

func (im *AuditImport) flush(ctx context.Context) error {
	if len(im.pending) == 0 {
		return nil
	}
	rows := make([][]any, len(im.pending))
	for i, e := range im.pending {
		rows[i] = []any{e.Seq, e.ID, e.Time, e.Event, e.User, e.Node, e.Sess, e.Body, e.PrevHash, e.Hash}
	}
	if _, err := im.tx.CopyFrom(ctx, pgx.Identifier{"audit_events"},
		[]string{"seq", "id", "time", "event", "user", "node", "session_id", "body", "prev_hash", "hash"},
		pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("import audit log: %w", err)
	}
	im.n += int64(len(im.pending))
	last := im.pending[len(im.pending)-1]
	im.last = &last
	im.pending = im.pending[:0]
	return nil
}

// Finish writes the retention checkpoints and the chain's tail (the
// highest seq ever assigned, the last hash), commits, and returns how
// many events it imported.
func (im *AuditImport) Finish(ctx context.Context, d auditchain.Dump) (int64, error) {
	defer im.Abort(ctx)
	if err := im.flush(ctx); err != nil {
		return 0, err
	}
	var tailHash []byte
	tailSeq := d.MaxSeq
	for _, c := range d.Checkpoints {
		if _, err := im.tx.Exec(ctx, `INSERT INTO audit_checkpoints (seq, hash, time, count) VALUES ($1, $2, $3, $4)`,
			c.Seq, c.Hash, c.Time, c.Count); err != nil {
			return 0, fmt.Errorf("import audit log: checkpoint: %w", err)
		}
		tailHash, tailSeq = c.Hash, max(tailSeq, c.Seq)
	}
	if im.last != nil {
		tailHash, tailSeq = im.last.Hash, max(tailSeq, im.last.Seq)
	}
	if _, err := im.tx.Exec(ctx, `UPDATE audit_tail SET seq = $1, hash = $2 WHERE id = 1`, tailSeq, tailHash); err != nil {
		return 0, fmt.Errorf("import audit log: tail: %w", err)
	}
	if err := im.tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("import audit log: commit: %w", err)
	}
	im.b.hub.notify()
	return im.n, nil
}

// Abort rolls the import back (a no-op after Finish).
func (im *AuditImport) Abort(ctx context.Context) {
	im.tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
}
