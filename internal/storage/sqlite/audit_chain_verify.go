package sqlite

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/auditchain"
)

// columnsExpr encodes the indexed columns into one value as
// auditchain.EncodeColumns does: reading one column instead of six makes
// Verify markedly faster.
const columnsExpr = `length(CAST(id AS BLOB)) || ':' || id || length(CAST(event AS BLOB)) || ':' || event ||
	length(CAST(user AS BLOB)) || ':' || user || length(CAST(node AS BLOB)) || ':' || node ||
	length(CAST(session_id AS BLOB)) || ':' || session_id || time`

// Verify walks the whole log in seq order, from the latest retention
// checkpoint, recomputing every event's hash from its stored canonical body
// and its predecessor's hash (auditchain.Verify says what it reports).
//
// With keys, every checkpoint event (audit.Checkpoint) must be signed by
// one of them over the event just before it: a rewrite of the chain before
// a checkpoint, even one that recomputes every hash, is then detected.
// Without keys checkpoints are not checked.
//
// Verify reads one consistent snapshot in a single streaming query: memory
// stays bounded and writers are not blocked.
func (a *AuditLog) Verify(ctx context.Context, keys ...ed25519.PublicKey) (audit.VerifyResult, error) {
	if a.b.closed() {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: %w", ErrClosed)
	}
	conn, err := a.b.reader.Conn(ctx)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: %w", err)
	}
	defer conn.Close()
	// A deferred read transaction: every query below sees the same snapshot,
	// so a concurrent retention cannot look like tampering.
	if _, err := conn.ExecContext(ctx, `BEGIN DEFERRED`); err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: begin: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`) //nolint:errcheck // read-only
	res, err := verifySnapshot(ctx, conn, keys)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: %w", err)
	}
	return res, nil
}

// sqlRows adapts *sql.Rows to auditchain.Rows.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Scan(row *auditchain.Row) error {
	return r.Rows.Scan(&row.Seq, &row.Body, &row.PrevHash, &row.Hash, &row.Cols)
}

func verifySnapshot(ctx context.Context, conn *sql.Conn, keys []ed25519.PublicKey) (audit.VerifyResult, error) {
	var cp *auditchain.Checkpoint
	var c auditchain.Checkpoint
	switch err := conn.QueryRowContext(ctx, `SELECT seq, hash, count FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`).
		Scan(&c.Seq, &c.Hash, &c.Count); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return audit.VerifyResult{}, fmt.Errorf("read checkpoint: %w", err)
	default:
		cp = &c
	}
	after := int64(0)
	if cp != nil {
		after = cp.Seq
	}
	rows, err := conn.QueryContext(ctx, `SELECT seq, body, prev_hash, hash, `+columnsExpr+`
		FROM audit_events WHERE seq > ? ORDER BY seq`, after)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	// AUTOINCREMENT remembers the highest seq ever used: events deleted from
	// the end of the log leave it ahead of the last event.
	maxSeq := func() (int64, error) {
		rows.Close()
		var n int64
		err := conn.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'), 0)`).Scan(&n)
		return n, err
	}
	return auditchain.Verify(sqlRows{rows}, cp, maxSeq, keys)
}

// VerifyFile verifies the audit log in the database file at path, opened
// read-only, as Verify does: for checking a copy of a database (or a live
// one) without auth, with public keys kept elsewhere.
func VerifyFile(ctx context.Context, path string, keys ...ed25519.PublicKey) (audit.VerifyResult, error) {
	if _, err := os.Stat(path); err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: %w", err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log %s: %w", path, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log %s: %w", path, err)
	}
	defer conn.Close()
	var v int
	if err := conn.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log %s: not a Warden database: %w", path, err)
	}
	if v != schemaVersion {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log %s: database schema version %d, this program reads %d", path, v, schemaVersion)
	}
	if _, err := conn.ExecContext(ctx, `BEGIN DEFERRED`); err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log %s: begin: %w", path, err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`) //nolint:errcheck // read-only
	res, err := verifySnapshot(ctx, conn, keys)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log %s: %w", path, err)
	}
	return res, nil
}
