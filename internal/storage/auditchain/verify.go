// Package auditchain is the driver-independent half of checking a
// hash-chained audit log: given the stored rows in seq order (each with its
// body, hashes and indexed columns), the latest retention checkpoint and
// the highest seq ever assigned, Verify finds the first event that was
// altered, removed, reordered or renumbered, and checks signed checkpoints.
// Every storage driver (sqlite, postgres) reads its rows its own way and
// hands them here, so a log verifies the same on each.
package auditchain

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/warden-sh/warden/internal/audit"
)

// Checkpoint is a retention checkpoint: the last event deleted and its hash.
type Checkpoint struct {
	Seq   int64
	Hash  []byte
	Count int64
}

// Row is one stored event as Verify reads it. Cols are the indexed
// columns (id, event, user, node, session_id, time) as EncodeColumns
// encodes them; nil if the driver could not read them.
type Row struct {
	Seq                  int64
	Body, PrevHash, Hash []byte
	Cols                 []byte
}

// Rows yields a log's rows in seq order, after the checkpoint.
type Rows interface {
	Next() bool
	// Scan fills r; r's slices must not be reused by the next Scan.
	Scan(r *Row) error
	Err() error
}

// ColumnNames are the indexed columns in EncodeColumns order.
var ColumnNames = []string{"id", "event", "user", "node", "session_id", "time"}

// EncodeColumns encodes the indexed columns into one value: each string
// prefixed by its byte length and a colon, then the time in Unix
// nanoseconds. SQLite builds the same in SQL (one column read instead of
// six makes its Verify markedly faster).
func EncodeColumns(b []byte, id, event, user, node, sessionID string, timeNS int64) []byte {
	for _, s := range []string{id, event, user, node, sessionID} {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	return strconv.AppendInt(b, timeNS, 10)
}

// Verify walks rows (those after cp, or all when cp is nil) recomputing
// every event's hash from its stored canonical body and its predecessor's
// hash. It reports the first event altered (body, hash or indexed
// columns), removed (naming the event after the gap), reordered or
// renumbered, a retention checkpoint that was altered or not recorded in
// the chain, and events removed from the end of the log (maxSeq, the
// highest seq the store ever assigned, is read after the rows).
//
// With keys, every checkpoint event (audit.Checkpoint) must be signed by
// one of them over the event just before it.
func Verify(rows Rows, cp *Checkpoint, maxSeq func() (int64, error), keys []ed25519.PublicKey) (audit.VerifyResult, error) {
	v := verifier{sig: audit.Signatures{Keys: keys}}
	if cp != nil {
		v.lastSeq, v.prev = cp.Seq, cp.Hash
	}
	failed := func(bad *audit.BadEvent) audit.VerifyResult {
		v.res.Checked, v.res.FirstBad, v.res.SignaturesChecked = v.checked, bad, len(keys) > 0
		return v.res
	}
	// One row of lookahead tells an altered hash from an altered body.
	var bufs [2]Row
	cur, next := &bufs[0], &bufs[1]
	have := rows.Next()
	if have {
		if err := rows.Scan(cur); err != nil {
			return audit.VerifyResult{}, fmt.Errorf("read events: %w", err)
		}
	}
	recorded := cp == nil // a checkpoint must be named by a retention event
	for have {
		haveNext := rows.Next()
		if haveNext {
			if err := rows.Scan(next); err != nil {
				return audit.VerifyResult{}, fmt.Errorf("read events: %w", err)
			}
		}
		var peek *Row
		if haveNext {
			peek = next
		}
		if bad := v.check(cur, peek, cp); bad != nil {
			return failed(bad), nil
		}
		if !recorded && bytes.Contains(cur.Body, retentionMarker) && namesCheckpoint(cur.Body, cp) {
			recorded = true
		}
		cur, next, have = next, cur, haveNext
	}
	if err := rows.Err(); err != nil {
		return audit.VerifyResult{Checked: v.checked}, fmt.Errorf("read events: %w", err)
	}
	top, err := maxSeq()
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("read sequence: %w", err)
	}
	if top > v.lastSeq {
		return failed(&audit.BadEvent{Seq: v.lastSeq + 1,
			Reason: fmt.Sprintf("events %d to %d were removed from the end of the log", v.lastSeq+1, top)}), nil
	}
	if !recorded {
		return failed(&audit.BadEvent{Seq: cp.Seq,
			Reason: fmt.Sprintf("retention checkpoint at seq %d is not recorded by an %s event: checkpoint forged or altered",
				cp.Seq, audit.Retention)}), nil
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
func (v *verifier) check(r, next *Row, cp *Checkpoint) *audit.BadEvent {
	bad := func(format string, args ...any) *audit.BadEvent {
		id := ""
		if parts, ok := parseColumns(r.Cols); ok {
			id = string(parts[0])
		}
		return &audit.BadEvent{Seq: r.Seq, ID: id, Reason: fmt.Sprintf(format, args...)}
	}
	v.checked++
	if r.Cols == nil {
		return bad("indexed columns missing")
	}
	if r.Hash == nil {
		return bad("event has no hash")
	}
	firstAfterCheckpoint := cp != nil && v.lastSeq == cp.Seq
	gap := r.Seq != v.lastSeq+1
	want := audit.ChainHash(v.prev, r.Body)
	switch {
	case bytes.Equal(want, r.Hash):
		// Intact and chained to its predecessor.
	case bytes.Equal(audit.ChainHash(r.PrevHash, r.Body), r.Hash):
		// Intact, but chained to something other than its predecessor.
		switch {
		case firstAfterCheckpoint:
			return bad("does not follow the retention checkpoint at seq %d: checkpoint altered or events removed", cp.Seq)
		case gap:
			return bad("an event before it was removed (seq %d to %d missing)", v.lastSeq+1, r.Seq-1)
		default:
			return bad("does not follow the event before it (seq %d): events reordered, or removed and renumbered", v.lastSeq)
		}
	case next != nil && bytes.Equal(next.PrevHash, want):
		return bad("event hash altered")
	case next != nil:
		return bad("event altered: its body no longer matches its hash")
	default:
		return bad("event altered: its body or its hash no longer match")
	}
	if !bytes.Equal(r.PrevHash, v.prev) {
		return bad("prev_hash altered")
	}
	if gap {
		if firstAfterCheckpoint {
			return bad("does not follow the retention checkpoint at seq %d: checkpoint altered", cp.Seq)
		}
		return bad("seq renumbered: expected %d", v.lastSeq+1)
	}
	if col := v.columnMismatch(r); col != "" {
		return bad("indexed column %s altered: it differs from the event body", col)
	}
	// The columns match the body: read the event's name and time there.
	if parts, ok := parseColumns(r.Cols); ok {
		ns, _ := strconv.ParseInt(string(parts[5]), 10, 64)
		decode := func() (audit.Event, error) {
			var ev audit.Event
			err := json.Unmarshal(r.Body, &ev)
			return ev, err
		}
		// A node's events carry fields.node_id and the node's clock.
		authTime := !bytes.Contains(r.Body, nodeIDKey)
		if reason := v.sig.Event(&v.res, string(parts[1]), time.Unix(0, ns), authTime, v.lastSeq, v.prev, decode); reason != "" {
			return bad("%s", reason)
		}
	}
	v.lastSeq, v.prev = r.Seq, r.Hash // Scan gives every row fresh slices
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
func (v *verifier) columnMismatch(r *Row) string {
	var ok bool
	v.colBuf, ok = appendColumnsFast(v.colBuf[:0], r.Body)
	if !ok {
		var ix indexed
		if err := json.Unmarshal(r.Body, &ix); err != nil {
			return "body (undecodable)"
		}
		v.colBuf = appendColumns(v.colBuf[:0], ix)
	}
	if bytes.Equal(v.colBuf, r.Cols) {
		return ""
	}
	want, ok1 := parseColumns(v.colBuf)
	got, ok2 := parseColumns(r.Cols)
	if ok1 && ok2 {
		for i := range want {
			if !bytes.Equal(want[i], got[i]) {
				return ColumnNames[i]
			}
		}
	}
	return "columns"
}

// appendColumns encodes ix as EncodeColumns does.
func appendColumns(b []byte, ix indexed) []byte {
	return EncodeColumns(b, ix.ID, ix.Event, ix.User, ix.Node, ix.SessionID, ix.Time.UnixNano())
}

// parseColumns splits an EncodeColumns value into its six parts.
func parseColumns(b []byte) ([][]byte, bool) {
	parts := make([][]byte, 0, len(ColumnNames))
	for range len(ColumnNames) - 1 {
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
func namesCheckpoint(body []byte, cp *Checkpoint) bool {
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
	return ev.Event == audit.Retention && ev.Fields.Seq == cp.Seq && ev.Fields.Deleted == cp.Count && ev.Fields.Hash == hex.EncodeToString(cp.Hash)
}

// StoredEvent is one audit row exactly as a driver stores it, for copying
// a log from one driver to another (warden migrate) with its seqs and
// hashes unchanged, so that its chain and signed checkpoints still verify.
type StoredEvent struct {
	Seq                     int64
	ID                      string
	Time                    int64 // unix ns
	Event, User, Node, Sess string
	Body, PrevHash, Hash    []byte
}

// Dump is the rest of a log besides its events: its retention checkpoints
// (with when they were made) and the highest seq ever assigned.
type Dump struct {
	Checkpoints []DumpCheckpoint
	MaxSeq      int64
}

// DumpCheckpoint is a retention checkpoint with its time (unix ns).
type DumpCheckpoint struct {
	Checkpoint
	Time int64
}
