package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/warden-sh/warden/internal/audit"
)

// Audit search limits.
const (
	DefaultAuditLimit = 1000
	MaxAuditLimit     = 10000
)

// AuditLog is the audit.Store kept in the backend's database. It is
// append-only: events are never updated or deleted through it.
type AuditLog struct {
	b *Backend
}

var _ audit.Store = (*AuditLog)(nil)

// AuditLog returns the audit store sharing b's database.
func (b *Backend) AuditLog() *AuditLog { return &AuditLog{b: b} }

// Emit stores ev. An empty ID gets a random one and a zero Time the
// backend clock's current time (UTC); Seq is assigned by the store.
func (a *AuditLog) Emit(ctx context.Context, ev audit.Event) error {
	_, err := a.Append(ctx, ev)
	return err
}

// Append is Emit that also returns the event as stored, with its ID, Time
// and Seq filled in.
func (a *AuditLog) Append(ctx context.Context, ev audit.Event) (audit.Event, error) {
	out, err := a.insert(ctx, []audit.Event{ev})
	if err != nil {
		return audit.Event{}, err
	}
	return out[0], nil
}

// EmitBatch stores evs in one transaction: all or none. Fields are filled
// in as by Emit.
func (a *AuditLog) EmitBatch(ctx context.Context, evs []audit.Event) error {
	if len(evs) == 0 {
		return nil
	}
	_, err := a.insert(ctx, evs)
	return err
}

func (a *AuditLog) insert(ctx context.Context, evs []audit.Event) ([]audit.Event, error) {
	if a.b.closed() {
		return nil, fmt.Errorf("emit audit events: %w", ErrClosed)
	}
	out := make([]audit.Event, len(evs))
	bodies := make([][]byte, len(evs))
	for i, ev := range evs {
		if ev.Event == "" {
			return nil, fmt.Errorf("emit audit event %d: empty event name", i)
		}
		if ev.ID == "" {
			id, err := newEventID()
			if err != nil {
				return nil, fmt.Errorf("emit audit event %q: %w", ev.Event, err)
			}
			ev.ID = id
		}
		if ev.Time.IsZero() {
			ev.Time = a.b.now()
		}
		ev.Time = ev.Time.UTC()
		ev.Seq = 0 // assigned below; not part of the stored body
		body, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("emit audit event %q: encode: %w", ev.Event, err)
		}
		out[i], bodies[i] = ev, body
	}

	tx, err := a.b.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("emit audit events: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_events
		(id, time, event, user, node, session_id, body) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO NOTHING`)
	if err != nil {
		return nil, fmt.Errorf("emit audit events: prepare: %w", err)
	}
	defer stmt.Close()
	for i := range out {
		ev := &out[i]
		res, err := stmt.ExecContext(ctx, ev.ID, ev.Time.UnixNano(), ev.Event, ev.User, ev.Node, ev.SessionID, string(bodies[i]))
		if err != nil {
			return nil, fmt.Errorf("emit audit event %q id %q: %w", ev.Event, ev.ID, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			// A retried delivery of an event already stored (same id):
			// idempotent, the first copy stays.
			if err := tx.QueryRowContext(ctx, `SELECT seq FROM audit_events WHERE id = ?`, ev.ID).Scan(&ev.Seq); err != nil {
				return nil, fmt.Errorf("emit audit event %q id %q: existing seq: %w", ev.Event, ev.ID, err)
			}
			continue
		}
		if ev.Seq, err = res.LastInsertId(); err != nil {
			return nil, fmt.Errorf("emit audit event %q id %q: seq: %w", ev.Event, ev.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("emit audit events: commit: %w", err)
	}
	return out, nil
}

// Search returns the events matching q, ordered by Seq ascending. Since is
// inclusive and Until exclusive. Limit defaults to DefaultAuditLimit and is
// capped at MaxAuditLimit; page on with AfterSeq set to the last Seq seen.
func (a *AuditLog) Search(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	if a.b.closed() {
		return nil, fmt.Errorf("search audit events: %w", ErrClosed)
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if q.Type != "" {
		add("event = ?", q.Type)
	}
	if q.User != "" {
		add("user = ?", q.User)
	}
	if q.Node != "" {
		add("node = ?", q.Node)
	}
	if q.SessionID != "" {
		add("session_id = ?", q.SessionID)
	}
	if !q.Since.IsZero() {
		add("time >= ?", q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		add("time < ?", q.Until.UnixNano())
	}
	if q.AfterSeq > 0 {
		add("seq > ?", q.AfterSeq)
	}
	limit := auditLimit(q.Limit)

	stmt := `SELECT seq, body FROM audit_events`
	if len(where) > 0 {
		stmt += ` WHERE ` + strings.Join(where, " AND ")
	}
	stmt += ` ORDER BY seq LIMIT ?`
	args = append(args, limit)

	rows, err := a.b.reader.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("search audit events: %w", err)
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var (
			seq  int64
			body string
		)
		if err := rows.Scan(&seq, &body); err != nil {
			return nil, fmt.Errorf("search audit events: %w", err)
		}
		var ev audit.Event
		if err := json.Unmarshal([]byte(body), &ev); err != nil {
			return nil, fmt.Errorf("search audit events: decode event seq %d: %w", seq, err)
		}
		ev.Seq = seq
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search audit events: %w", err)
	}
	return out, nil
}

// auditLimit applies the default and the cap to a requested limit.
func auditLimit(n int) int {
	if n <= 0 {
		return DefaultAuditLimit
	}
	return min(n, MaxAuditLimit)
}

// newEventID returns 16 random bytes in hex.
func newEventID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("event id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
