package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/warden-sh/warden/internal/audit"
)

// checkpoint is a retention checkpoint: the last event deleted and its hash.
type checkpoint struct {
	seq   int64
	hash  []byte
	count int64
}

// chainRow is one stored event as Verify reads it.
type chainRow struct {
	seq                         int64
	id, event, user, node, sess string
	time                        int64
	body, prevHash, hash        []byte
}

// Verify walks the whole log in seq order, from the latest retention
// checkpoint, recomputing every event's hash from its stored canonical body
// and its predecessor's hash. It reports the first event that was altered
// (body, hash or indexed columns), removed (naming the event after the
// gap), reordered or renumbered, a retention checkpoint that was altered or
// not recorded in the chain, and events removed from the end of the log.
//
// Verify reads one consistent snapshot in a single streaming query: memory
// stays bounded and writers are not blocked. A hash chain shows edits that
// do not rewrite everything after them; to catch a wholesale rewrite,
// compare the hashes with a copy kept elsewhere (see internal/auditsink).
func (a *AuditLog) Verify(ctx context.Context) (audit.VerifyResult, error) {
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
	res, err := verifySnapshot(ctx, conn)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("verify audit log: %w", err)
	}
	return res, nil
}

func verifySnapshot(ctx context.Context, conn *sql.Conn) (audit.VerifyResult, error) {
	var cp *checkpoint
	var c checkpoint
	switch err := conn.QueryRowContext(ctx, `SELECT seq, hash, count FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`).
		Scan(&c.seq, &c.hash, &c.count); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return audit.VerifyResult{}, fmt.Errorf("read checkpoint: %w", err)
	default:
		cp = &c
	}

	v := verifier{}
	if cp != nil {
		v.lastSeq, v.prev = cp.seq, cp.hash
	}
	rows, err := conn.QueryContext(ctx, `SELECT seq, id, time, event, user, node, session_id, body, prev_hash, hash
		FROM audit_events WHERE seq > ? ORDER BY seq`, v.lastSeq)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	scan := func(r *chainRow) error {
		return rows.Scan(&r.seq, &r.id, &r.time, &r.event, &r.user, &r.node, &r.sess, &r.body, &r.prevHash, &r.hash)
	}
	// One row of lookahead tells an altered hash from an altered body.
	var bufs [2]chainRow
	cur, next := &bufs[0], &bufs[1]
	have := rows.Next()
	if have {
		if err := scan(cur); err != nil {
			return audit.VerifyResult{}, fmt.Errorf("read events: %w", err)
		}
	}
	recorded := cp == nil // a checkpoint must be named by a retention event
	for have {
		haveNext := rows.Next()
		if haveNext {
			if err := scan(next); err != nil {
				return audit.VerifyResult{}, fmt.Errorf("read events: %w", err)
			}
		}
		var peek *chainRow
		if haveNext {
			peek = next
		}
		if bad := v.check(cur, peek, cp); bad != nil {
			return audit.VerifyResult{Checked: v.checked, FirstBad: bad}, nil
		}
		if !recorded && cur.event == audit.Retention && namesCheckpoint(cur.body, cp) {
			recorded = true
		}
		cur, next, have = next, cur, haveNext
	}
	if err := rows.Err(); err != nil {
		return audit.VerifyResult{Checked: v.checked}, fmt.Errorf("read events: %w", err)
	}
	rows.Close()

	// AUTOINCREMENT remembers the highest seq ever used: events deleted from
	// the end of the log leave it ahead of the last event.
	var maxSeq int64
	if err := conn.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'), 0)`).
		Scan(&maxSeq); err != nil {
		return audit.VerifyResult{}, fmt.Errorf("read sequence: %w", err)
	}
	if maxSeq > v.lastSeq {
		return audit.VerifyResult{Checked: v.checked, FirstBad: &audit.BadEvent{Seq: v.lastSeq + 1,
			Reason: fmt.Sprintf("events %d to %d were removed from the end of the log", v.lastSeq+1, maxSeq)}}, nil
	}
	if !recorded {
		return audit.VerifyResult{Checked: v.checked, FirstBad: &audit.BadEvent{Seq: cp.seq,
			Reason: fmt.Sprintf("retention checkpoint at seq %d is not recorded by an %s event: checkpoint forged or altered",
				cp.seq, audit.Retention)}}, nil
	}
	return audit.VerifyResult{OK: true, Checked: v.checked}, nil
}

// verifier carries the chain state from one event to the next.
type verifier struct {
	lastSeq int64  // seq of the previous event (or checkpoint)
	prev    []byte // its hash
	checked int64
}

// check verifies r against the previous event; next (nil at the end) tells
// an altered hash from an altered body. It returns nil if r is intact.
func (v *verifier) check(r, next *chainRow, cp *checkpoint) *audit.BadEvent {
	bad := func(format string, args ...any) *audit.BadEvent {
		return &audit.BadEvent{Seq: r.seq, ID: r.id, Reason: fmt.Sprintf(format, args...)}
	}
	v.checked++
	if r.hash == nil {
		return bad("event has no hash")
	}
	firstAfterCheckpoint := cp != nil && v.lastSeq == cp.seq
	gap := r.seq != v.lastSeq+1
	want := audit.ChainHash(v.prev, r.body)
	switch {
	case bytes.Equal(want, r.hash):
		// Intact and chained to its predecessor.
	case bytes.Equal(audit.ChainHash(r.prevHash, r.body), r.hash):
		// Intact, but chained to something other than its predecessor.
		switch {
		case firstAfterCheckpoint:
			return bad("does not follow the retention checkpoint at seq %d: checkpoint altered or events removed", cp.seq)
		case gap:
			return bad("an event before it was removed (seq %d to %d missing)", v.lastSeq+1, r.seq-1)
		default:
			return bad("does not follow the event before it (seq %d): events reordered, or removed and renumbered", v.lastSeq)
		}
	case next != nil && bytes.Equal(next.prevHash, want):
		return bad("event hash altered")
	case next != nil:
		return bad("event altered: its body no longer matches its hash")
	default:
		return bad("event altered: its body or its hash no longer match")
	}
	if !bytes.Equal(r.prevHash, v.prev) {
		return bad("prev_hash altered")
	}
	if gap {
		if firstAfterCheckpoint {
			return bad("does not follow the retention checkpoint at seq %d: checkpoint altered", cp.seq)
		}
		return bad("seq renumbered: expected %d", v.lastSeq+1)
	}
	if col := columnMismatch(r); col != "" {
		return bad("indexed column %s altered: it differs from the event body", col)
	}
	v.lastSeq, v.prev = r.seq, r.hash // Scan gives every row fresh slices
	return nil
}

// indexed holds the body fields copied into indexed columns.
type indexed struct {
	Event     string    `json:"event"`
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	User      string    `json:"user"`
	Node      string    `json:"node"`
	SessionID string    `json:"session_id"`
}

// columnMismatch names the first indexed column that disagrees with the
// body (which the hash covers): a changed column could hide an event from
// searches.
func columnMismatch(r *chainRow) string {
	var ix indexed
	if err := json.Unmarshal(r.body, &ix); err != nil {
		return "body (undecodable)"
	}
	switch {
	case ix.ID != r.id:
		return "id"
	case ix.Event != r.event:
		return "event"
	case ix.Time.UnixNano() != r.time:
		return "time"
	case ix.User != r.user:
		return "user"
	case ix.Node != r.node:
		return "node"
	case ix.SessionID != r.sess:
		return "session_id"
	}
	return ""
}

// namesCheckpoint reports whether a retention event's body records cp.
func namesCheckpoint(body []byte, cp *checkpoint) bool {
	var ev struct {
		Fields struct {
			Seq     int64  `json:"checkpoint_seq"`
			Hash    string `json:"checkpoint_hash"`
			Deleted int64  `json:"deleted"`
		} `json:"fields"`
	}
	if json.Unmarshal(body, &ev) != nil {
		return false
	}
	return ev.Fields.Seq == cp.seq && ev.Fields.Deleted == cp.count && ev.Fields.Hash == hex.EncodeToString(cp.hash)
}
