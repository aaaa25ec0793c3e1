package postgres

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/auditchain"
)

func timeAfter(d time.Duration) <-chan time.Time { return time.After(d) }

// querier is a transaction or the pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// AppendCheckpoint appends the checkpoint event sign makes for the last
// event of the log, as the SQLite driver does: when after.Seq > 0 every
// event since after must still chain to it (else nothing is appended and
// the first bad event is returned), and nothing is appended when the log is
// empty or already ends with a checkpoint. The events since after are
// checked first without the tail lock, then those that came meanwhile with
// it, together with the append.
func (a *AuditLog) AppendCheckpoint(ctx context.Context, after audit.ChainPos,
	sign func(seq int64, hash []byte) (audit.Event, error)) (audit.Event, *audit.BadEvent, error) {
	if a.b.closed() {
		return audit.Event{}, nil, fmt.Errorf("audit checkpoint: %w", ErrClosed)
	}
	if after.Seq > 0 {
		last, bad, err := checkSince(ctx, a.b.pool, after)
		if err != nil || bad != nil {
			return audit.Event{}, bad, err
		}
		after = last
	}
	var (
		bad     *audit.BadEvent
		skipped bool
	)
	out, err := a.inTx(ctx, func(tx pgx.Tx) ([]audit.Event, error) {
		bad, skipped = nil, false
		if _, _, err := lockTail(ctx, tx); err != nil {
			return nil, err
		}
		var (
			seq       int64
			hash      []byte
			lastEvent string
		)
		err := tx.QueryRow(ctx, `SELECT seq, hash, event FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash, &lastEvent)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			skipped = true
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("read tail: %w", err)
		}
		if after.Seq > 0 {
			var err error
			if _, bad, err = checkSince(ctx, tx, after); err != nil || bad != nil {
				return nil, err
			}
		}
		switch {
		case lastEvent == audit.Checkpoint:
			skipped = true
			return nil, nil
		case hash == nil:
			bad = &audit.BadEvent{Seq: seq, Reason: "event has no hash"}
			return nil, nil
		}
		ev, err := sign(seq, hash)
		if err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		p, err := a.prepare(ev)
		if err != nil {
			return nil, err
		}
		return a.insertTx(ctx, tx, []auditchain.Prepared{p})
	})
	switch {
	case err != nil:
		return audit.Event{}, nil, fmt.Errorf("audit checkpoint: %w", err)
	case bad != nil:
		return audit.Event{}, bad, nil
	case skipped || len(out) == 0:
		return audit.Event{}, nil, nil
	}
	a.b.hub.notify()
	return out[0], nil, nil
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
	err = r.q.QueryRow(r.ctx, `SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	return seq, hash, err
}

func (r sinceReader) HashAt(seq int64) (hash []byte, found bool, err error) {
	err = r.q.QueryRow(r.ctx, `SELECT hash FROM audit_events WHERE seq = $1`, seq).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return hash, err == nil, err
}

func (r sinceReader) EventsAfter(after int64, fn func(seq int64, id string, body, prevHash, hash []byte) bool) error {
	rows, err := r.q.Query(r.ctx, `SELECT seq, id, body, prev_hash, hash FROM audit_events WHERE seq > $1 ORDER BY seq`, after)
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

// LastCheckpoint returns the last checkpoint event of the log, if any.
func (a *AuditLog) LastCheckpoint(ctx context.Context) (audit.Event, bool, error) {
	if a.b.closed() {
		return audit.Event{}, false, fmt.Errorf("read last audit checkpoint: %w", ErrClosed)
	}
	evs, err := a.Search(ctx, audit.Query{Type: audit.Checkpoint, Newest: true, Limit: 1})
	if err != nil || len(evs) == 0 {
		return audit.Event{}, false, err
	}
	return evs[0], true, nil
}

// DeleteBefore deletes a prefix of the log, every event up to the first
// whose time is not before t, leaving a retention checkpoint (the last
// deleted event's seq and hash) and appending an audit.Retention event
// naming it, in one transaction, as the SQLite driver does.
func (a *AuditLog) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	if a.b.closed() {
		return 0, fmt.Errorf("audit retention: %w", ErrClosed)
	}
	var count, lastSeq int64
	_, err := a.inTx(ctx, func(tx pgx.Tx) ([]audit.Event, error) {
		count, lastSeq = 0, 0
		if _, _, err := lockTail(ctx, tx); err != nil {
			return nil, err
		}
		var firstKept *int64
		err := tx.QueryRow(ctx, `SELECT seq FROM audit_events WHERE time >= $1 ORDER BY seq LIMIT 1`, t.UnixNano()).Scan(&firstKept)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("find cutoff: %w", err)
		}
		cond, args := `true`, []any{}
		if firstKept != nil {
			cond, args = `seq < $1`, []any{*firstKept}
		}
		var last *int64
		if err := tx.QueryRow(ctx, `SELECT max(seq), count(*) FROM audit_events WHERE `+cond, args...).Scan(&last, &count); err != nil {
			return nil, fmt.Errorf("count: %w", err)
		}
		if last == nil || count == 0 {
			count = 0
			return nil, nil
		}
		lastSeq = *last
		var hash []byte
		if err := tx.QueryRow(ctx, `SELECT hash FROM audit_events WHERE seq = $1`, lastSeq).Scan(&hash); err != nil {
			return nil, fmt.Errorf("read last hash: %w", err)
		}
		if hash == nil {
			return nil, fmt.Errorf("event seq %d has no hash: run Verify", lastSeq)
		}
		now := a.b.now().UTC()
		if _, err := tx.Exec(ctx, `INSERT INTO audit_checkpoints (seq, hash, time, count) VALUES ($1, $2, $3, $4)`,
			lastSeq, hash, now.UnixNano(), count); err != nil {
			return nil, fmt.Errorf("write checkpoint: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE seq <= $1`, lastSeq); err != nil {
			return nil, fmt.Errorf("delete: %w", err)
		}
		p, err := a.prepare(audit.Event{Event: audit.Retention, Time: now, Success: true, Fields: map[string]any{
			"before":          t.UTC().Format(time.RFC3339Nano),
			"deleted":         count,
			"checkpoint_seq":  lastSeq,
			"checkpoint_hash": hex.EncodeToString(hash),
		}})
		if err != nil {
			return nil, err
		}
		return a.insertTx(ctx, tx, []auditchain.Prepared{p})
	})
	if err != nil {
		return 0, fmt.Errorf("audit retention: %w", err)
	}
	if count > 0 {
		a.b.hub.notify()
		a.b.log.Info("audit retention", "deleted", count, "checkpoint_seq", lastSeq, "before", t)
	}
	return count, nil
}

// pgRows adapts pgx.Rows to auditchain.Rows.
type pgRows struct{ rows pgx.Rows }

func (r *pgRows) Next() bool { return r.rows.Next() }
func (r *pgRows) Err() error { return r.rows.Err() }
func (r *pgRows) Scan(row *auditchain.Row) error {
	var (
		id, event, user, node, sess string
		t                           int64
	)
	if err := r.rows.Scan(&row.Seq, &row.Body, &row.PrevHash, &row.Hash, &id, &event, &user, &node, &sess, &t); err != nil {
		return err
	}
	row.Cols = auditchain.EncodeColumns(nil, id, event, user, node, sess, t)
	return nil
}

// Verify walks the whole log in seq order from the latest retention
// checkpoint, recomputing every hash, in one repeatable-read snapshot
// (auditchain.Verify says what it reports). With keys, every checkpoint
// event must be signed by one of them.
func (a *AuditLog) Verify(ctx context.Context, keys ...ed25519.PublicKey) (audit.VerifyResult, error) {
	if a.b.closed() {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: %w", ErrClosed)
	}
	tx, err := a.b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	var cp *auditchain.Checkpoint
	var c auditchain.Checkpoint
	switch err := tx.QueryRow(ctx, `SELECT seq, hash, count FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`).Scan(&c.Seq, &c.Hash, &c.Count); {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: read checkpoint: %w", err)
	default:
		cp = &c
	}
	after := int64(0)
	if cp != nil {
		after = cp.Seq
	}
	rows, err := tx.Query(ctx, `SELECT seq, body, prev_hash, hash, id, event, "user", node, session_id, time
		FROM audit_events WHERE seq > $1 ORDER BY seq`, after)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: read events: %w", err)
	}
	defer rows.Close()
	// The tail remembers the highest seq ever assigned: events deleted
	// from the end of the log leave it ahead of the last event.
	maxSeq := func() (int64, error) {
		rows.Close()
		var n int64
		err := tx.QueryRow(ctx, `SELECT seq FROM audit_tail WHERE id = 1`).Scan(&n)
		return n, err
	}
	res, err := auditchain.Verify(&pgRows{rows: rows}, cp, maxSeq, keys)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: %w", err)
	}
	return res, nil
}
