package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/auditchain"
)

// AppendCheckpoint appends the checkpoint event that sign makes for the
// last event of the log (its seq and hash), in one transaction with these
// checks:
//
//   - when after.Seq > 0 (the last checkpoint position the caller trusts),
//     the event there must still have after.Hash and every event since must
//     chain to it; if not, nothing is appended and the first bad event is
//     returned. Columns are not compared here: Verify does that.
//   - nothing is appended (a zero event is returned) when the log is empty
//     or its last event is already a checkpoint: there is nothing new to
//     sign.
//
// The events since after are checked first without the write lock, then
// those that came meanwhile with it, together with the append: no event
// can slip in unchecked, and writers wait only for the last few.
func (a *AuditLog) AppendCheckpoint(ctx context.Context, after audit.ChainPos,
	sign func(seq int64, hash []byte) (audit.Event, error)) (audit.Event, *audit.BadEvent, error) {
	if a.b.closed() {
		return audit.Event{}, nil, fmt.Errorf("audit checkpoint: %w", ErrClosed)
	}
	if after.Seq > 0 {
		last, bad, err := checkSince(ctx, a.b.reader, after)
		if err != nil || bad != nil {
			return audit.Event{}, bad, err
		}
		after = last
	}
	tx, err := a.b.writer.BeginTx(ctx, nil)
	if err != nil {
		return audit.Event{}, nil, fmt.Errorf("audit checkpoint: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var (
		seq       int64
		hash      []byte
		lastEvent string
	)
	err = tx.QueryRowContext(ctx, `SELECT seq, hash, event FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash, &lastEvent)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return audit.Event{}, nil, nil
	case err != nil:
		return audit.Event{}, nil, fmt.Errorf("audit checkpoint: read tail: %w", err)
	}
	if after.Seq > 0 {
		_, bad, err := checkSince(ctx, tx, after)
		if err != nil || bad != nil {
			return audit.Event{}, bad, err
		}
	}
	switch {
	case lastEvent == audit.Checkpoint:
		return audit.Event{}, nil, nil
	case hash == nil:
		return audit.Event{}, &audit.BadEvent{Seq: seq, Reason: "event has no hash"}, nil
	}
	ev, err := sign(seq, hash)
	if err != nil {
		return audit.Event{}, nil, fmt.Errorf("audit checkpoint: sign: %w", err)
	}
	p, err := a.prepare(ev)
	if err != nil {
		return audit.Event{}, nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	out, err := a.insertTx(ctx, tx, []auditchain.Prepared{p})
	if err != nil {
		return audit.Event{}, nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return audit.Event{}, nil, fmt.Errorf("audit checkpoint: commit: %w", err)
	}
	a.hub.notify()
	return out[0], nil, nil
}

// querier is a transaction or a connection pool.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// checkSince is auditchain.CheckSince over q.
func checkSince(ctx context.Context, q querier, pos audit.ChainPos) (audit.ChainPos, *audit.BadEvent, error) {
	return auditchain.CheckSince(sinceReader{ctx, q}, pos)
}

// sinceReader reads what auditchain.CheckSince needs through q.
type sinceReader struct {
	ctx context.Context
	q   querier
}

func (r sinceReader) RetentionCheckpoint() (seq int64, hash []byte, err error) {
	err = r.q.QueryRowContext(r.ctx, `SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	return seq, hash, err
}

func (r sinceReader) HashAt(seq int64) (hash []byte, found bool, err error) {
	err = r.q.QueryRowContext(r.ctx, `SELECT hash FROM audit_events WHERE seq = ?`, seq).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	return hash, err == nil, err
}

func (r sinceReader) EventsAfter(after int64, fn func(seq int64, id string, body, prevHash, hash []byte) bool) error {
	rows, err := r.q.QueryContext(r.ctx, `SELECT seq, id, body, prev_hash, hash FROM audit_events WHERE seq > ? ORDER BY seq`, after)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			seq                  int64
			id                   string
			body, prevHash, hash []byte
		)
		if err := rows.Scan(&seq, &id, &body, &prevHash, &hash); err != nil {
			return err
		}
		if !fn(seq, id, body, prevHash, hash) {
			return nil
		}
	}
	return rows.Err()
}

// LastCheckpoint returns the last checkpoint event of the log, if any (as
// stored: it may have been tampered with; see audit.CheckCheckpoint).
func (a *AuditLog) LastCheckpoint(ctx context.Context) (audit.Event, bool, error) {
	if a.b.closed() {
		return audit.Event{}, false, fmt.Errorf("read last audit checkpoint: %w", ErrClosed)
	}
	var seq int64
	err := a.b.reader.QueryRowContext(ctx, `SELECT seq FROM audit_events WHERE event = ? ORDER BY seq DESC LIMIT 1`,
		audit.Checkpoint).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return audit.Event{}, false, nil
	}
	if err != nil {
		return audit.Event{}, false, fmt.Errorf("read last audit checkpoint: %w", err)
	}
	evs, err := a.Search(ctx, audit.Query{Type: audit.Checkpoint, AfterSeq: seq - 1, Limit: 1})
	if err != nil || len(evs) == 0 {
		return audit.Event{}, false, err
	}
	return evs[0], true, nil
}
