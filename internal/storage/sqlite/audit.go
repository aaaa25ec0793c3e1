package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/auditchain"
)

// AuditLog is the audit.Store kept in the backend's database. Events are
// append-only and hash-chained (see audit.ChainHash): they are never updated,
// and deleted only by DeleteBefore, which leaves a checkpoint the chain
// continues from.
type AuditLog struct {
	b   *Backend
	hub *auditHub // shared by every AuditLog of b
}

var _ audit.Store = (*AuditLog)(nil)

// AuditLog returns the audit store sharing b's database. All values
// returned for one Backend share their group commit queue and subscribers.
func (b *Backend) AuditLog() *AuditLog { return &AuditLog{b: b, hub: hubFor(b)} }

// appender is the shared half of Emit, Append and EmitBatch.
func (a *AuditLog) appender() auditchain.Appender {
	return auditchain.Appender{Queue: &a.hub.queue, Now: a.b.now, Closed: a.b.closed, ErrClosed: ErrClosed, Commit: a.commit}
}

// Emit stores ev. An empty ID gets a random one and a zero Time the
// backend clock's current time (UTC); Seq, PrevHash and Hash are assigned by
// the store. Concurrent Emits are committed together (group commit); each
// returns once its event is durable. If ctx ends first, Emit returns its
// error but the event may still be stored: retry with the same ID.
func (a *AuditLog) Emit(ctx context.Context, ev audit.Event) error { return a.appender().Emit(ctx, ev) }

// Append is Emit that also returns the event as stored, with its ID, Time,
// Seq and hashes filled in.
func (a *AuditLog) Append(ctx context.Context, ev audit.Event) (audit.Event, error) {
	return a.appender().Append(ctx, ev)
}

// EmitBatch stores evs in one transaction: all or none. Fields are filled
// in as by Emit. Concurrent batches and Emits share group commits.
func (a *AuditLog) EmitBatch(ctx context.Context, evs []audit.Event) error {
	return a.appender().EmitBatch(ctx, evs)
}

// prepare validates ev, fills in its ID and Time and encodes its body.
func (a *AuditLog) prepare(ev audit.Event) (auditchain.Prepared, error) {
	return auditchain.Prepare(ev, a.b.now)
}

// commit stores ps in one transaction and wakes subscribers.
func (a *AuditLog) commit(ctx context.Context, ps []auditchain.Prepared) ([]audit.Event, error) {
	tx, err := a.b.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("emit audit events: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	out, err := a.insertTx(ctx, tx, ps)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("emit audit events: commit: %w", err)
	}
	a.hub.notify()
	return out, nil
}

// insertTx appends ps to the chain inside tx: one read of the chain's tail,
// then one insert per event.
func (a *AuditLog) insertTx(ctx context.Context, tx *sql.Tx, ps []auditchain.Prepared) ([]audit.Event, error) {
	_, prev, err := a.tail(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("emit audit events: %w", err)
	}
	// Look the ids up before inserting rather than INSERT ... ON CONFLICT DO
	// NOTHING: an ignored insert still consumes an AUTOINCREMENT seq, and
	// Verify relies on seqs having no gaps.
	stored, err := storedEvents(ctx, tx, ps)
	if err != nil {
		return nil, fmt.Errorf("emit audit events: %w", err)
	}
	if stored == nil && len(ps) > 1 {
		stored = make(map[string]audit.Event, len(ps))
	}
	insert, err := tx.PrepareContext(ctx, `INSERT INTO audit_events
		(id, time, event, user, node, session_id, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("emit audit events: prepare: %w", err)
	}
	defer insert.Close()
	out := make([]audit.Event, len(ps))
	for i := range ps {
		ev := ps[i].Ev
		if st, ok := stored[ev.ID]; ok {
			// A retried delivery of an event already stored (same id):
			// idempotent, the first copy stays and the chain is unchanged.
			ev.Seq, ev.PrevHash, ev.Hash = st.Seq, st.PrevHash, st.Hash
			out[i] = ev
			continue
		}
		hash := audit.ChainHash(prev, ps[i].Body)
		res, err := insert.ExecContext(ctx, ev.ID, ev.Time.UnixNano(), ev.Event, ev.User, ev.Node, ev.SessionID,
			ps[i].Body, prev, hash)
		if err != nil {
			return nil, fmt.Errorf("emit audit event %q id %q: %w", ev.Event, ev.ID, err)
		}
		if ev.Seq, err = res.LastInsertId(); err != nil {
			return nil, fmt.Errorf("emit audit event %q id %q: seq: %w", ev.Event, ev.ID, err)
		}
		ev.PrevHash, ev.Hash = hex.EncodeToString(prev), hex.EncodeToString(hash)
		out[i] = ev
		prev = hash
		if stored != nil {
			stored[ev.ID] = ev // for a duplicate later in this batch
		}
	}
	return out, nil
}

// storedEvents returns the events of ps already stored, by id (nil if
// none), reading them in a few queries rather than one per event.
func storedEvents(ctx context.Context, tx *sql.Tx, ps []auditchain.Prepared) (map[string]audit.Event, error) {
	const chunk = 500 // well under SQLite's limit on bound parameters
	var ids []any
	for _, p := range ps {
		if !p.NewID { // 128 random bits: no need to look
			ids = append(ids, p.Ev.ID)
		}
	}
	var found map[string]audit.Event
	for start := 0; start < len(ids); start += chunk {
		args := ids[start:min(start+chunk, len(ids))]
		rows, err := tx.QueryContext(ctx, `SELECT id, seq, prev_hash, hash FROM audit_events WHERE id IN (?`+
			strings.Repeat(",?", len(args)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("look up ids: %w", err)
		}
		for rows.Next() {
			var (
				ev    audit.Event
				ph, h []byte
			)
			if err := rows.Scan(&ev.ID, &ev.Seq, &ph, &h); err != nil {
				rows.Close()
				return nil, fmt.Errorf("look up ids: %w", err)
			}
			ev.PrevHash, ev.Hash = hex.EncodeToString(ph), hex.EncodeToString(h)
			if found == nil {
				found = map[string]audit.Event{}
			}
			found[ev.ID] = ev
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("look up ids: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("look up ids: %w", err)
		}
	}
	return found, nil
}

// Search returns the events matching q, ordered by Seq ascending (or
// descending: q.Newest). Since is
// inclusive and Until exclusive. At most q.EffectiveLimit() events are
// returned; page on with AfterSeq set to the last Seq seen.
// Text matches the stored JSON (keys and values; a quote or backslash in Text
// matches itself or its JSON escape), ignoring case.
func (a *AuditLog) Search(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	if a.b.closed() {
		return nil, fmt.Errorf("search audit events: %w", ErrClosed)
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg ...any) {
		where = append(where, cond)
		args = append(args, arg...)
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
	if q.BeforeSeq > 0 {
		add("seq < ?", q.BeforeSeq)
	}
	limit := q.EffectiveLimit()

	// SQLite's lower() folds ASCII only: an ASCII needle is matched in SQL,
	// any other in Go (below) with Unicode case folding.
	var match func(body []byte) bool
	if q.Text != "" {
		raw, esc := strings.ToLower(q.Text), strings.ToLower(audit.EscapeText(q.Text))
		if isASCII(q.Text) {
			add("(instr(lower(body), ?) > 0 OR instr(lower(body), ?) > 0)", raw, esc)
		} else {
			match = func(body []byte) bool {
				l := strings.ToLower(string(body))
				return strings.Contains(l, raw) || strings.Contains(l, esc)
			}
		}
	}

	stmt := `SELECT seq, body, prev_hash, hash FROM audit_events`
	if len(where) > 0 {
		stmt += ` WHERE ` + strings.Join(where, " AND ")
	}
	stmt += ` ORDER BY seq`
	if q.Newest {
		stmt += ` DESC`
	}
	if match == nil {
		stmt += ` LIMIT ?`
		args = append(args, limit)
	}

	rows, err := a.b.reader.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("search audit events: %w", err)
	}
	defer rows.Close()
	var out []audit.Event
	for len(out) < limit && rows.Next() {
		var (
			seq            int64
			body, ph, hash []byte
		)
		if err := rows.Scan(&seq, &body, &ph, &hash); err != nil {
			return nil, fmt.Errorf("search audit events: %w", err)
		}
		if match != nil && !match(body) {
			continue
		}
		var ev audit.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			return nil, fmt.Errorf("search audit events: decode event seq %d: %w", seq, err)
		}
		ev.Seq, ev.PrevHash, ev.Hash = seq, hex.EncodeToString(ph), hex.EncodeToString(hash)
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search audit events: %w", err)
	}
	return out, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
