package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/auditchain"
)

// AuditLog is the audit.Store in the backend's database. Events are
// append-only and hash-chained (audit.ChainHash) in one chain shared by
// every instance on the database: an append locks audit_tail, reads the
// last seq and hash, inserts its events after them and moves the tail, in
// one transaction. Seqs are therefore gapless and in commit order, and the
// chain verifies exactly as SQLite's does.
type AuditLog struct{ b *Backend }

var _ audit.Store = (*AuditLog)(nil)

// AuditLog returns the audit store sharing b's database.
func (b *Backend) AuditLog() *AuditLog { return &AuditLog{b: b} }

// auditHub is the group commit queue and the subscribers of one Backend.
type auditHub struct {
	queue auditchain.Queue
	subs  auditchain.Subscribers
}

func newAuditHub() *auditHub { return &auditHub{} }

// notify wakes every subscriber (after a local commit, or a NOTIFY from
// another instance's).
func (h *auditHub) notify() { h.subs.Notify() }

// appender is the shared half of Emit, Append and EmitBatch.
func (a *AuditLog) appender() auditchain.Appender {
	return auditchain.Appender{Queue: &a.b.hub.queue, Now: a.b.now, Closed: a.b.closed, ErrClosed: ErrClosed, Commit: a.commit}
}

// Emit stores ev (see Append).
func (a *AuditLog) Emit(ctx context.Context, ev audit.Event) error { return a.appender().Emit(ctx, ev) }

// Append stores ev and returns it as stored, with its ID, Time, Seq and
// hashes. An empty ID gets a random one, a zero Time the backend clock's
// time. Concurrent appends of this process share one transaction (group
// commit). If ctx ends first the event may still be stored: retry with
// the same ID, which is idempotent.
func (a *AuditLog) Append(ctx context.Context, ev audit.Event) (audit.Event, error) {
	return a.appender().Append(ctx, ev)
}

// EmitBatch stores evs in one transaction: all or none.
func (a *AuditLog) EmitBatch(ctx context.Context, evs []audit.Event) error {
	return a.appender().EmitBatch(ctx, evs)
}

// prepare validates ev, fills in its ID and Time and encodes its body.
func (a *AuditLog) prepare(ev audit.Event) (auditchain.Prepared, error) {
	return auditchain.Prepare(ev, a.b.now)
}

// commit stores ps in one transaction. One that fails because the
// database went away (a restart, a failover, a lost connection) is retried
// for at most Config.RetryWait: every retry looks the events' ids up under
// the tail lock, so a first attempt that committed after all (its reply was
// lost) is found, not stored twice.
func (a *AuditLog) commit(ctx context.Context, ps []auditchain.Prepared) ([]audit.Event, error) {
	var out []audit.Event
	attempt := 0
	err := a.b.retryIdempotent(ctx, func() error {
		if attempt++; attempt > 1 {
			// A retry looks every id up: should the first attempt have
			// committed after all, its events are found, not doubled.
			for i := range ps {
				ps[i].NewID = false
			}
		}
		var err error
		if a.b.auditOneTx { // benchmarks: the five round trip baseline
			out, err = a.inTx(ctx, func(tx pgx.Tx) ([]audit.Event, error) { return a.insertTx(ctx, tx, ps) })
		} else {
			out, err = a.appendPipelined(ctx, ps)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("emit audit events: %w", err)
	}
	a.b.hub.notify()
	return out, nil
}

// inTx runs fn in a transaction and commits it.
func (a *AuditLog) inTx(ctx context.Context, fn func(tx pgx.Tx) ([]audit.Event, error)) ([]audit.Event, error) {
	tx, err := a.b.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	out, err := fn(tx)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return out, nil
}

// lockTail locks the chain's tail and returns the last seq and hash.
func lockTail(ctx context.Context, tx pgx.Tx) (int64, []byte, error) {
	var (
		seq  int64
		hash []byte
	)
	if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_tail WHERE id = 1 FOR UPDATE`).Scan(&seq, &hash); err != nil {
		return 0, nil, fmt.Errorf("lock audit chain tail: %w", err)
	}
	return seq, hash, nil
}

// insertTx appends ps to the chain inside tx, after locking its tail.
func (a *AuditLog) insertTx(ctx context.Context, tx pgx.Tx, ps []auditchain.Prepared) ([]audit.Event, error) {
	seq, prev, err := lockTail(ctx, tx)
	if err != nil {
		return nil, err
	}
	stored, err := storedEvents(ctx, tx, lookupIDs(ps))
	if err != nil {
		return nil, err
	}
	out, batch := chainAfter(seq, prev, ps, stored)
	if batch == nil {
		return out, nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("insert audit events: %w", err)
	}
	return out, nil
}

// appendPipelined is insertTx and its transaction in two round trips to
// the server instead of five: BEGIN, the tail lock and the id lookup in
// one pipeline; the insert, the tail's move, the NOTIFY and COMMIT in
// another. A failure leaves the connection closed (never back in the pool
// in an open transaction); the transaction then rolls back, unless COMMIT
// was sent, which is for the caller's retry to find out (by the ids).
func (a *AuditLog) appendPipelined(ctx context.Context, ps []auditchain.Prepared) (out []audit.Event, err error) {
	conn, err := a.b.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) //nolint:errcheck // discarded either way
		}
		conn.Release()
	}()
	var (
		seq    int64
		prev   []byte
		stored map[string]audit.Event
	)
	first := &pgx.Batch{}
	first.Queue(`BEGIN`)
	first.Queue(`SELECT seq, hash FROM audit_tail WHERE id = 1 FOR UPDATE`).QueryRow(func(row pgx.Row) error {
		return row.Scan(&seq, &prev)
	})
	if ids := lookupIDs(ps); len(ids) > 0 {
		first.Queue(lookupSQL, ids).Query(func(rows pgx.Rows) error {
			var lerr error
			stored, lerr = scanStored(rows)
			return lerr
		})
	}
	if err := conn.SendBatch(ctx, first).Close(); err != nil {
		return nil, fmt.Errorf("lock audit chain tail: %w", err)
	}
	out, batch := chainAfter(seq, prev, ps, stored)
	if batch == nil {
		batch = &pgx.Batch{}
	}
	batch.Queue(`COMMIT`)
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("insert audit events: %w", err)
	}
	return out, nil
}

// lookupIDs returns the ids of ps that may be stored already: those the
// caller chose (a node resending its journal). Generated ones (128 random
// bits) cannot be.
func lookupIDs(ps []auditchain.Prepared) []string {
	var ids []string
	for _, p := range ps {
		if !p.NewID {
			ids = append(ids, p.Ev.ID)
		}
	}
	return ids
}

// chainAfter chains ps after the tail (seq, prev), leaving out those in
// stored (returned as stored: idempotent) and repeats of an id in ps, and
// returns them as stored and the statements that insert them and move the
// tail (nil if there is nothing to insert).
func chainAfter(seq int64, prev []byte, ps []auditchain.Prepared, stored map[string]audit.Event) ([]audit.Event, *pgx.Batch) {
	if stored == nil && len(ps) > 1 {
		stored = make(map[string]audit.Event, len(ps))
	}
	var (
		seqs                             []int64
		times                            []int64
		ids, names, users, nodes, sessns []string
		bodies, prevs, hashes            [][]byte
	)
	out := make([]audit.Event, len(ps))
	for i := range ps {
		ev := ps[i].Ev
		if st, ok := stored[ev.ID]; ok {
			// A retried delivery of an event already stored: idempotent.
			ev.Seq, ev.PrevHash, ev.Hash = st.Seq, st.PrevHash, st.Hash
			out[i] = ev
			continue
		}
		hash := audit.ChainHash(prev, ps[i].Body)
		seq++
		seqs, times = append(seqs, seq), append(times, ev.Time.UnixNano())
		ids, names, users, nodes, sessns = append(ids, ev.ID), append(names, ev.Event), append(users, ev.User),
			append(nodes, ev.Node), append(sessns, ev.SessionID)
		bodies, prevs, hashes = append(bodies, ps[i].Body), append(prevs, prev), append(hashes, hash)
		ev.Seq, ev.PrevHash, ev.Hash = seq, hex.EncodeToString(prev), hex.EncodeToString(hash)
		out[i] = ev
		prev = hash
		if stored != nil {
			stored[ev.ID] = ev
		}
	}
	if len(seqs) == 0 {
		return out, nil
	}
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO audit_events (seq, id, time, event, "user", node, session_id, body, prev_hash, hash)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::bytea[], $9::bytea[], $10::bytea[])`,
		seqs, ids, times, names, users, nodes, sessns, bodies, prevs, hashes)
	batch.Queue(`UPDATE audit_tail SET seq = $1, hash = $2 WHERE id = 1`, seq, prev)
	batch.Queue(`SELECT pg_notify('warden_audit', $1::text)`, fmt.Sprint(seq))
	return out, batch
}

const lookupSQL = `SELECT id, seq, prev_hash, hash FROM audit_events WHERE id = ANY($1)`

// storedEvents returns the events with these ids already stored (nil if
// none or no ids).
func storedEvents(ctx context.Context, tx pgx.Tx, ids []string) (map[string]audit.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, lookupSQL, ids)
	if err != nil {
		return nil, fmt.Errorf("look up ids: %w", err)
	}
	return scanStored(rows)
}

func scanStored(rows pgx.Rows) (map[string]audit.Event, error) {
	defer rows.Close()
	var found map[string]audit.Event
	for rows.Next() {
		var (
			ev    audit.Event
			ph, h []byte
		)
		if err := rows.Scan(&ev.ID, &ev.Seq, &ph, &h); err != nil {
			return nil, fmt.Errorf("look up ids: %w", err)
		}
		ev.PrevHash, ev.Hash = hex.EncodeToString(ph), hex.EncodeToString(h)
		if found == nil {
			found = map[string]audit.Event{}
		}
		found[ev.ID] = ev
	}
	return found, rows.Err()
}

// Search returns the events matching q, ordered by Seq ascending (or
// descending: q.Newest), as the SQLite driver does: Since inclusive, Until
// exclusive, Text matched case-insensitively against the stored JSON.
func (a *AuditLog) Search(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	if a.b.closed() {
		return nil, fmt.Errorf("search audit events: %w", ErrClosed)
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	if q.Type != "" {
		add("event = ?", q.Type)
	}
	if q.User != "" {
		add(`"user" = ?`, q.User)
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
	var match func(body []byte) bool
	if q.Text != "" {
		raw, esc := strings.ToLower(q.Text), strings.ToLower(audit.EscapeText(q.Text))
		if isASCII(q.Text) {
			// lower() of an ASCII needle matches whatever the database's
			// locale folds; ASCII letters fold the same in every one.
			args = append(args, raw, esc)
			where = append(where, fmt.Sprintf("(strpos(lower(convert_from(body, 'UTF8')), $%d) > 0 OR strpos(lower(convert_from(body, 'UTF8')), $%d) > 0)",
				len(args)-1, len(args)))
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
		stmt += fmt.Sprintf(` LIMIT %d`, limit)
	}
	var out []audit.Event
	err := a.b.retryIdempotent(ctx, func() error {
		out = out[:0]
		rows, err := a.b.pool.Query(ctx, stmt, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for len(out) < limit && rows.Next() {
			var (
				seq            int64
				body, ph, hash []byte
			)
			if err := rows.Scan(&seq, &body, &ph, &hash); err != nil {
				return err
			}
			if match != nil && !match(body) {
				continue
			}
			var ev audit.Event
			if err := json.Unmarshal(body, &ev); err != nil {
				return fmt.Errorf("decode event seq %d: %w", seq, err)
			}
			ev.Seq, ev.PrevHash, ev.Hash = seq, hex.EncodeToString(ph), hex.EncodeToString(hash)
			out = append(out, ev)
		}
		return rows.Err()
	})
	if err != nil {
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

// Subscribe delivers, in seq order, every event with Seq > afterSeq: those
// stored, then new ones from any instance as they commit. The table is the
// truth: a commit here or a NOTIFY from another instance only wakes the
// subscriber, which reads what follows its last seq (seqs commit in order:
// a read never sees a later event without the earlier ones). The channel
// is closed when ctx ends or the backend closes; a read error is retried
// (a lost connection), so a subscriber outlives a database restart.
func (a *AuditLog) Subscribe(ctx context.Context, afterSeq int64) (<-chan audit.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("subscribe to audit log: %w", err)
	}
	b := a.b
	wake := make(chan struct{}, 1)
	b.hub.subs.Add(wake)
	b.watchMu.Lock()
	if b.closed() {
		b.watchMu.Unlock()
		b.hub.subs.Remove(wake)
		return nil, fmt.Errorf("subscribe to audit log: %w", ErrClosed)
	}
	b.bg.Add(1)
	b.watchMu.Unlock()
	out := make(chan audit.Event, 64)
	f := auditchain.Follower{
		Search: a.Search, Wake: wake, Closing: b.closing, Closed: b.closed,
		ReadFailed: func(last int64, failures int, err error) bool {
			if failures == 1 || failures%100 == 0 {
				b.log.Warn("audit subscriber: read failed; retrying", "after_seq", last, "err", err)
			}
			return true
		},
		Poll: func() <-chan time.Time { return timeAfter(b.cfg.PollInterval) },
	}
	go func() {
		defer b.bg.Done()
		defer close(out)
		defer b.hub.subs.Remove(wake)
		f.Follow(ctx, afterSeq, out)
	}()
	return out, nil
}
