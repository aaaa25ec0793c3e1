package sqlite

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
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
	seq                  int64
	body, prevHash, hash []byte
	cols                 []byte // indexed columns, encoded by columnsExpr
}

// columnsExpr encodes the indexed columns into one value, each string
// prefixed by its byte length, then the time: reading one column instead
// of six makes Verify markedly faster. appendColumns builds the same from
// a body.
const columnsExpr = `length(CAST(id AS BLOB)) || ':' || id || length(CAST(event AS BLOB)) || ':' || event ||
	length(CAST(user AS BLOB)) || ':' || user || length(CAST(node AS BLOB)) || ':' || node ||
	length(CAST(session_id AS BLOB)) || ':' || session_id || time`

// columnNames are the columns in columnsExpr order.
var columnNames = []string{"id", "event", "user", "node", "session_id", "time"}

// Verify walks the whole log in seq order, from the latest retention
// checkpoint, recomputing every event's hash from its stored canonical body
// and its predecessor's hash. It reports the first event that was altered
// (body, hash or indexed columns), removed (naming the event after the
// gap), reordered or renumbered, a retention checkpoint that was altered or
// not recorded in the chain, and events removed from the end of the log.
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

func verifySnapshot(ctx context.Context, conn *sql.Conn, keys []ed25519.PublicKey) (audit.VerifyResult, error) {
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

	v := verifier{sig: audit.Signatures{Keys: keys}}
	if cp != nil {
		v.lastSeq, v.prev = cp.seq, cp.hash
	}
	// failed returns the outcome at the first bad event.
	failed := func(bad *audit.BadEvent) audit.VerifyResult {
		v.res.Checked, v.res.FirstBad, v.res.SignaturesChecked = v.checked, bad, len(keys) > 0
		return v.res
	}
	rows, err := conn.QueryContext(ctx, `SELECT seq, body, prev_hash, hash, `+columnsExpr+`
		FROM audit_events WHERE seq > ? ORDER BY seq`, v.lastSeq)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	scan := func(r *chainRow) error {
		return rows.Scan(&r.seq, &r.body, &r.prevHash, &r.hash, &r.cols)
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
			return failed(bad), nil
		}
		if !recorded && bytes.Contains(cur.body, retentionMarker) && namesCheckpoint(cur.body, cp) {
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
		return failed(&audit.BadEvent{Seq: v.lastSeq + 1,
			Reason: fmt.Sprintf("events %d to %d were removed from the end of the log", v.lastSeq+1, maxSeq)}), nil
	}
	if !recorded {
		return failed(&audit.BadEvent{Seq: cp.seq,
			Reason: fmt.Sprintf("retention checkpoint at seq %d is not recorded by an %s event: checkpoint forged or altered",
				cp.seq, audit.Retention)}), nil
	}
	v.res.OK, v.res.Checked = true, v.checked
	v.res.Last = audit.ChainPos{Seq: v.lastSeq, Hash: hex.EncodeToString(v.prev)}
	v.sig.Finish(&v.res)
	return v.res, nil
}

// verifier carries the chain state from one event to the next.
type verifier struct {
	lastSeq int64  // seq of the previous event (or checkpoint)
	prev    []byte // its hash
	checked int64
	colBuf  []byte
	sig     audit.Signatures
	res     audit.VerifyResult
}

// check verifies r against the previous event; next (nil at the end) tells
// an altered hash from an altered body. It returns nil if r is intact.
func (v *verifier) check(r, next *chainRow, cp *checkpoint) *audit.BadEvent {
	bad := func(format string, args ...any) *audit.BadEvent {
		id := ""
		if parts, ok := parseColumns(r.cols); ok {
			id = string(parts[0])
		}
		return &audit.BadEvent{Seq: r.seq, ID: id, Reason: fmt.Sprintf(format, args...)}
	}
	v.checked++
	if r.cols == nil {
		return bad("indexed columns missing")
	}
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
	if col := v.columnMismatch(r); col != "" {
		return bad("indexed column %s altered: it differs from the event body", col)
	}
	// The columns match the body: read the event's name and time there.
	if parts, ok := parseColumns(r.cols); ok {
		ns, _ := strconv.ParseInt(string(parts[5]), 10, 64)
		decode := func() (audit.Event, error) {
			var ev audit.Event
			err := json.Unmarshal(r.body, &ev)
			return ev, err
		}
		// A node's events carry fields.node_id and the node's clock.
		authTime := !bytes.Contains(r.body, nodeIDKey)
		if reason := v.sig.Event(&v.res, string(parts[1]), time.Unix(0, ns), authTime, v.lastSeq, v.prev, decode); reason != "" {
			return bad("%s", reason)
		}
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

// nodeIDKey marks the events a node sent (auth adds fields.node_id).
var nodeIDKey = []byte(`"node_id":`)

// retentionMarker finds retention events cheaply; namesCheckpoint decodes.
var retentionMarker = []byte(`"event":"` + audit.Retention + `"`)

// columnMismatch names the first indexed column that disagrees with the
// body (which the hash covers): a changed column could hide an event from
// searches.
func (v *verifier) columnMismatch(r *chainRow) string {
	var ok bool
	v.colBuf, ok = appendColumnsFast(v.colBuf[:0], r.body)
	if !ok {
		var ix indexed
		if err := json.Unmarshal(r.body, &ix); err != nil {
			return "body (undecodable)"
		}
		v.colBuf = appendColumns(v.colBuf[:0], ix)
	}
	if bytes.Equal(v.colBuf, r.cols) {
		return ""
	}
	want, ok1 := parseColumns(v.colBuf)
	got, ok2 := parseColumns(r.cols)
	if ok1 && ok2 {
		for i := range want {
			if !bytes.Equal(want[i], got[i]) {
				return columnNames[i]
			}
		}
	}
	return "columns"
}

// appendColumns encodes ix as columnsExpr does.
func appendColumns(b []byte, ix indexed) []byte {
	for _, s := range []string{ix.ID, ix.Event, ix.User, ix.Node, ix.SessionID} {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	return strconv.AppendInt(b, ix.Time.UnixNano(), 10)
}

// parseColumns splits a columnsExpr value into its six parts.
func parseColumns(b []byte) ([][]byte, bool) {
	parts := make([][]byte, 0, len(columnNames))
	for range len(columnNames) - 1 {
		colon := bytes.IndexByte(b, ':')
		if colon < 0 {
			return nil, false
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || n > len(b)-colon-1 {
			return nil, false
		}
		parts = append(parts, b[colon+1:colon+1+n])
		b = b[colon+1+n:]
	}
	return append(parts, b), true
}

// appendColumnsFast is appendColumns for a canonical body, reading the
// fields without a full JSON decode (which would make Verify several times
// slower). It only handles what Canonical writes and reports !ok for
// anything else, including an indexed string with an escape; the caller
// then decodes the body.
func appendColumnsFast(b []byte, body []byte) ([]byte, bool) {
	ix, ok := scanIndexed(body)
	if !ok {
		return b, false
	}
	for _, s := range [][]byte{ix.id, ix.event, ix.user, ix.node, ix.sess} {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	return strconv.AppendInt(b, ix.time, 10), true
}

// rawIndexed is indexed as slices of a canonical body.
type rawIndexed struct {
	event, id, user, node, sess []byte
	time                        int64
}

func scanIndexed(body []byte) (ix rawIndexed, ok bool) {
	if len(body) < 2 || body[0] != '{' {
		return ix, false
	}
	i := 1
	if body[i] == '}' {
		return ix, i == len(body)-1
	}
	for {
		key, next, plain := scanString(body, i)
		if next < 0 || !plain || next >= len(body) || body[next] != ':' {
			return ix, false
		}
		i = next + 1
		if i >= len(body) {
			return ix, false
		}
		var dst *[]byte
		switch string(key) {
		case "event":
			dst = &ix.event
		case "id":
			dst = &ix.id
		case "user":
			dst = &ix.user
		case "node":
			dst = &ix.node
		case "session_id":
			dst = &ix.sess
		}
		switch {
		case string(key) == "time":
			v, next, plain := scanString(body, i)
			if next < 0 || !plain {
				return ix, false
			}
			t, err := time.Parse(time.RFC3339Nano, string(v))
			if err != nil {
				return ix, false
			}
			ix.time, i = t.UnixNano(), next
		case dst != nil:
			v, next, plain := scanString(body, i)
			if next < 0 || !plain {
				return ix, false
			}
			*dst, i = v, next
		default:
			if i = skipValue(body, i); i < 0 {
				return ix, false
			}
		}
		if i >= len(body) {
			return ix, false
		}
		switch body[i] {
		case ',':
			i++
		case '}':
			return ix, i == len(body)-1
		default:
			return ix, false
		}
	}
}

// scanString reads the JSON string starting at body[i]. plain is false if
// it holds an escape (s is then not decoded); next is -1 if there is no
// string at i.
func scanString(body []byte, i int) (s []byte, next int, plain bool) {
	if i >= len(body) || body[i] != '"' {
		return nil, -1, false
	}
	plain = true
	for j := i + 1; j < len(body); j++ {
		switch c := body[j]; {
		case c == '\\':
			plain = false
			j++
		case c == '"':
			return body[i+1 : j], j + 1, plain
		case c < 0x20:
			return nil, -1, false
		}
	}
	return nil, -1, false
}

// skipValue returns the index just past the JSON value at body[i], or -1.
func skipValue(body []byte, i int) int {
	depth := 0
	for ; i < len(body); i++ {
		switch body[i] {
		case '"':
			_, next, _ := scanString(body, i)
			if next < 0 {
				return -1
			}
			i = next - 1
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
		case ',':
			if depth == 0 {
				return i
			}
		}
		if depth == 0 && (body[i] == '"' || body[i] == '}' || body[i] == ']') {
			return i + 1
		}
	}
	if depth == 0 {
		return i
	}
	return -1
}

// namesCheckpoint reports whether a retention event's body records cp.
func namesCheckpoint(body []byte, cp *checkpoint) bool {
	var ev struct {
		Event  string `json:"event"`
		Fields struct {
			Seq     int64  `json:"checkpoint_seq"`
			Hash    string `json:"checkpoint_hash"`
			Deleted int64  `json:"deleted"`
		} `json:"fields"`
	}
	if json.Unmarshal(body, &ev) != nil {
		return false
	}
	return ev.Event == audit.Retention && ev.Fields.Seq == cp.seq && ev.Fields.Deleted == cp.count && ev.Fields.Hash == hex.EncodeToString(cp.hash)
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
