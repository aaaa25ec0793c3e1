package sqlite

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/storagetest"
)

// chainFixture emits n events e1..en (seq 1..n) and returns the log.
func chainFixture(t *testing.T, n int) (*Backend, *AuditLog) {
	t.Helper()
	b := openTest(t, Config{})
	log := b.AuditLog()
	evs := make([]audit.Event, n)
	for i := range evs {
		evs[i] = audit.Event{Event: audit.Exec, ID: fmt.Sprintf("e%d", i+1), User: []string{"alice", "bob"}[i%2],
			Node: "web1", Time: auditEpoch.Add(time.Duration(i) * time.Minute), Fields: map[string]any{"command": fmt.Sprintf("cmd %d", i+1)}}
	}
	// Half in a batch, half one by one: both paths chain.
	if err := log.EmitBatch(t.Context(), evs[:n/2]); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs[n/2:] {
		if err := log.Emit(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	return b, log
}

func mustVerify(t *testing.T, log *AuditLog, keys ...ed25519.PublicKey) audit.VerifyResult {
	t.Helper()
	res, err := log.Verify(t.Context(), keys...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestAuditChainLinksEvents(t *testing.T) {
	_, log := chainFixture(t, 10)
	evs, err := log.Search(t.Context(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	prev := ""
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
		if ev.PrevHash != prev {
			t.Errorf("seq %d: PrevHash %q, want %q", ev.Seq, ev.PrevHash, prev)
		}
		want, err := audit.HashEvent(prev, ev)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Hash != want || len(ev.Hash) != 64 {
			t.Errorf("seq %d: Hash %q, recomputed %q", ev.Seq, ev.Hash, want)
		}
		prev = ev.Hash
	}
	// Append returns the stored hashes, and a retried id returns the first
	// copy's without extending the chain.
	got, err := log.Append(t.Context(), audit.Event{Event: audit.Exec, ID: "e11", Time: auditEpoch})
	if err != nil {
		t.Fatal(err)
	}
	again, err := log.Append(t.Context(), audit.Event{Event: audit.Exec, ID: "e11", Time: auditEpoch.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if got.PrevHash != prev || got.Hash == "" || again.Hash != got.Hash || again.Seq != got.Seq {
		t.Errorf("Append = %+v, retry = %+v, want prev %s", got, again, prev)
	}
	if err := log.EmitBatch(t.Context(), []audit.Event{{Event: audit.Exec, ID: "e11"}, {Event: audit.Exec, ID: "e12"}, {Event: audit.Exec, ID: "e12"}}); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, log); !res.OK || res.Checked != 12 {
		t.Fatalf("Verify after retries = %+v, want OK with 12 events", res)
	}
}

func TestAuditVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name    string
		sql     []string
		wantSeq int64
		wantID  string
		reason  string
	}{
		{"untouched", nil, 0, "", ""},
		{"body altered", []string{`UPDATE audit_events SET body = replace(body, 'cmd 5', 'cmd X') WHERE seq = 5`},
			5, "e5", "body no longer matches its hash"},
		{"last body altered", []string{`UPDATE audit_events SET body = replace(body, 'cmd 10', 'cmd X') WHERE seq = 10`},
			10, "e10", "body or its hash"},
		{"event removed", []string{`DELETE FROM audit_events WHERE seq = 5`},
			6, "e6", "an event before it was removed (seq 5 to 5 missing)"},
		{"first event removed", []string{`DELETE FROM audit_events WHERE seq = 1`},
			2, "e2", "an event before it was removed"},
		{"several removed", []string{`DELETE FROM audit_events WHERE seq BETWEEN 3 AND 6`},
			7, "e7", "seq 3 to 6 missing"},
		{"last events removed", []string{`DELETE FROM audit_events WHERE seq >= 9`},
			9, "", "events 9 to 10 were removed from the end"},
		{"bodies swapped", []string{
			`UPDATE audit_events SET body = (SELECT body FROM audit_events WHERE seq = 5) WHERE seq = 4`,
			`UPDATE audit_events SET body = (SELECT body FROM audit_events WHERE seq = 3) WHERE seq = 5`,
			`UPDATE audit_events SET body = replace(body, '"e3"', '"e4"') WHERE seq = 5`},
			4, "e4", "altered"},
		{"rows reordered", []string{
			`UPDATE audit_events SET seq = -4 WHERE seq = 4`,
			`UPDATE audit_events SET seq = 4 WHERE seq = 5`,
			`UPDATE audit_events SET seq = 5 WHERE seq = -4`},
			4, "e5", "events reordered"},
		{"hash altered", []string{`UPDATE audit_events SET hash = zeroblob(32) WHERE seq = 3`},
			3, "e3", "event hash altered"},
		{"hash cleared", []string{`UPDATE audit_events SET hash = NULL WHERE seq = 3`},
			3, "e3", "no hash"},
		{"prev_hash altered", []string{`UPDATE audit_events SET prev_hash = zeroblob(32) WHERE seq = 7`},
			7, "e7", "prev_hash altered"},
		{"user column altered", []string{`UPDATE audit_events SET user = 'carol' WHERE seq = 2`},
			2, "e2", "indexed column user"},
		{"time column altered", []string{`UPDATE audit_events SET time = time + 1 WHERE seq = 8`},
			8, "e8", "indexed column time"},
		{"renumbered", []string{`UPDATE audit_events SET seq = 20 WHERE seq = 10`},
			20, "e10", "seq renumbered: expected 10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, log := chainFixture(t, 10)
			for _, q := range tc.sql {
				if _, err := b.writer.ExecContext(t.Context(), q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			res := mustVerify(t, log)
			if tc.reason == "" {
				if !res.OK || res.FirstBad != nil || res.Checked != 10 {
					t.Fatalf("Verify = %+v, want OK with 10 checked", res)
				}
				return
			}
			if res.OK || res.FirstBad == nil {
				t.Fatalf("Verify = %+v, want a failure at seq %d", res, tc.wantSeq)
			}
			bad := res.FirstBad
			if bad.Seq != tc.wantSeq || bad.ID != tc.wantID || !strings.Contains(bad.Reason, tc.reason) {
				t.Fatalf("FirstBad = %v, want seq %d id %q reason containing %q", bad, tc.wantSeq, tc.wantID, tc.reason)
			}
		})
	}
}

func TestAuditRetention(t *testing.T) {
	clock := storagetest.NewClock(auditEpoch.Add(24 * time.Hour))
	b := openTest(t, Config{Now: clock.Now})
	log := b.AuditLog()
	ctx := t.Context()
	at := func(h int) time.Time { return auditEpoch.Add(time.Duration(h) * time.Hour) }
	evs := []audit.Event{
		{Event: audit.Exec, ID: "h0", Time: at(0)},
		{Event: audit.Exec, ID: "h1", Time: at(1)},
		{Event: audit.Exec, ID: "h5", Time: at(5)},
		{Event: audit.Exec, ID: "h2-late", Time: at(2)}, // emitted late: kept until h5 goes
		{Event: audit.Exec, ID: "h6", Time: at(6)},
	}
	if err := log.EmitBatch(ctx, evs); err != nil {
		t.Fatal(err)
	}
	ids := func() []string {
		got, err := log.Search(ctx, audit.Query{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ev := range got {
			out = append(out, ev.ID)
		}
		return out
	}

	// Nothing older: nothing written.
	if n, err := log.DeleteBefore(ctx, at(0)); err != nil || n != 0 {
		t.Fatalf("DeleteBefore(oldest) = %d, %v", n, err)
	}
	n, err := log.DeleteBefore(ctx, at(3))
	if err != nil || n != 2 {
		t.Fatalf("DeleteBefore(3h) = %d, %v; want 2", n, err)
	}
	got := ids()
	if diff := cmp.Diff([]string{"h5", "h2-late", "h6"}, got[:3]); diff != "" || len(got) != 4 {
		t.Fatalf("after retention (-want +got):\n%s\nall: %v", diff, got)
	}
	ret, err := log.Search(ctx, audit.Query{Type: audit.Retention})
	if err != nil || len(ret) != 1 {
		t.Fatalf("retention events: %v, %v", ret, err)
	}
	f := ret[0].Fields
	if f["deleted"] != json.Number("2") || f["checkpoint_seq"] != json.Number("2") || f["before"] != at(3).Format(time.RFC3339Nano) ||
		!ret[0].Time.Equal(clock.Now()) || !ret[0].Success {
		t.Errorf("retention event = %+v", ret[0])
	}
	if res := mustVerify(t, log); !res.OK || res.Checked != 4 {
		t.Fatalf("Verify after retention = %+v", res)
	}

	// The chain goes on; a second retention deletes everything older,
	// including the first retention event, and chains on its checkpoint.
	if err := log.Emit(ctx, audit.Event{Event: audit.Exec, ID: "h7", Time: at(7)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if n, err := log.DeleteBefore(ctx, clock.Now().Add(time.Minute)); err != nil || n != 5 {
		t.Fatalf("DeleteBefore(all) = %d, %v; want 5", n, err)
	}
	if got := ids(); len(got) != 1 {
		t.Fatalf("after deleting all, log holds %v, want only the retention event", got)
	}
	if res := mustVerify(t, log); !res.OK || res.Checked != 1 {
		t.Fatalf("Verify after deleting all = %+v", res)
	}
	if err := log.Emit(ctx, audit.Event{Event: audit.Exec, ID: "h8"}); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, log); !res.OK || res.Checked != 2 {
		t.Fatalf("Verify = %+v", res)
	}
}

func TestAuditRetentionCheckpointTampering(t *testing.T) {
	tests := []struct {
		name   string
		sql    []string
		reason string
	}{
		{"checkpoint hash altered", []string{`UPDATE audit_checkpoints SET hash = zeroblob(32)`},
			"does not follow the retention checkpoint"},
		{"checkpoint seq altered", []string{`UPDATE audit_checkpoints SET seq = seq - 1`},
			"does not follow the retention checkpoint"},
		{"checkpoint count altered", []string{`UPDATE audit_checkpoints SET count = count + 1`},
			"not recorded by an audit.retention event"},
		{"checkpoint removed", []string{`DELETE FROM audit_checkpoints`},
			"an event before it was removed"},
		{"more events deleted under a forged checkpoint", []string{
			`INSERT INTO audit_checkpoints (seq, hash, time, count) SELECT seq, hash, 0, 1 FROM audit_events WHERE seq = 7`,
			`DELETE FROM audit_events WHERE seq <= 7`},
			"not recorded by an audit.retention event"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, log := chainFixture(t, 10)
			if n, err := log.DeleteBefore(t.Context(), auditEpoch.Add(4*time.Minute)); err != nil || n != 4 {
				t.Fatalf("DeleteBefore = %d, %v", n, err)
			}
			if res := mustVerify(t, log); !res.OK {
				t.Fatalf("Verify before tampering = %+v", res)
			}
			for _, q := range tc.sql {
				if _, err := b.writer.ExecContext(t.Context(), q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			res := mustVerify(t, log)
			if res.OK || res.FirstBad == nil || !strings.Contains(res.FirstBad.Reason, tc.reason) {
				t.Fatalf("Verify = %+v (%v), want reason containing %q", res, res.FirstBad, tc.reason)
			}
		})
	}
}

// TestAuditLegacyEventsAreChainedByTheMigration: a log written before the
// chain existed (schema version 2) is chained once, by the migration that
// adds the chain.
func TestAuditLegacyEventsAreChainedByTheMigration(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "warden.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_version (version INTEGER NOT NULL);
		INSERT INTO schema_version (version) VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:2] {
		if _, err := db.ExecContext(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Rows as schema version 2 wrote them: struct-ordered JSON, no hashes.
	for i := range 3 {
		body := fmt.Sprintf(`{"event":"exec","time":"2032-01-01T00:00:0%dZ","id":"old%d","user":"u","success":true}`, i, i)
		ts := time.Date(2032, 1, 1, 0, 0, i, 0, time.UTC).UnixNano()
		if _, err := db.ExecContext(ctx, `INSERT INTO audit_events (id, time, event, user, body) VALUES (?, ?, 'exec', 'u', ?)`,
			fmt.Sprintf("old%d", i), ts, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	log := openTest(t, Config{Path: path}).AuditLog()
	if res := mustVerify(t, log); !res.OK || res.Checked != 3 {
		t.Fatalf("Verify after the migration = %+v (%v)", res, res.FirstBad)
	}
	if err := log.Emit(ctx, audit.Event{Event: audit.Exec, ID: "new"}); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, log); !res.OK || res.Checked != 4 {
		t.Fatalf("Verify after first write = %+v (%v)", res, res.FirstBad)
	}
	evs, err := log.Search(ctx, audit.Query{User: "u"})
	if err != nil || len(evs) != 3 || !evs[0].Success || evs[2].Hash == "" {
		t.Fatalf("legacy events after chaining = %+v, %v", evs, err)
	}
}

// TestAuditClearedChainIsNotRechained: clearing every hash (two SQL
// statements) and forging a body must not make the log verify again, and
// the next event must not re-chain the log.
func TestAuditClearedChainIsNotRechained(t *testing.T) {
	b, log := chainFixture(t, 10)
	ctx := t.Context()
	for _, q := range []string{
		`UPDATE audit_events SET body = replace(body, 'cmd 5', 'cmd X') WHERE seq = 5`,
		`UPDATE audit_events SET hash = NULL, prev_hash = NULL`,
	} {
		if _, err := b.writer.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	check := func(when string) {
		t.Helper()
		res := mustVerify(t, log)
		if res.OK || res.FirstBad == nil || res.FirstBad.Seq != 1 || !strings.Contains(res.FirstBad.Reason, "no hash") {
			t.Fatalf("Verify %s = %+v (%v), want seq 1 without hash", when, res, res.FirstBad)
		}
	}
	check("after clearing the chain")
	if err := log.Emit(ctx, audit.Event{Event: audit.Exec, ID: "after"}); err != nil {
		t.Fatal(err)
	}
	check("after the next event")
	var unchained int
	if err := b.reader.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE hash IS NULL`).Scan(&unchained); err != nil {
		t.Fatal(err)
	}
	if unchained != 10 {
		t.Fatalf("%d events without hash after the next write, want the 10 cleared ones (no re-chaining)", unchained)
	}
	if _, err := log.DeleteBefore(ctx, auditEpoch.Add(5*time.Minute)); err == nil {
		t.Fatal("retention over unchained events succeeded")
	}
}

func TestAuditSearchText(t *testing.T) {
	log := openTest(t, Config{}).AuditLog()
	ctx := t.Context()
	evs := []audit.Event{
		{Event: audit.Exec, ID: "t1", User: "alice", Fields: map[string]any{"command": "sudo systemctl restart NGINX"}},
		{Event: audit.Exec, ID: "t2", User: "bob", Fields: map[string]any{"command": `echo "hello" > C:\tmp`}},
		{Event: audit.SFTP, ID: "t3", User: "alice", Fields: map[string]any{"path": "/srv/École/Über.txt"}},
		{Event: audit.UserLogin, ID: "t4", User: "bob", Error: "wrong password"},
		{Event: audit.Exec, ID: "t5", User: "alice", Fields: map[string]any{"command": "nginx -t"}},
	}
	if err := log.EmitBatch(ctx, evs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    audit.Query
		want []string
	}{
		{"ascii ignores case", audit.Query{Text: "nginx"}, []string{"t1", "t5"}},
		{"upper needle", audit.Query{Text: "WRONG PASSWORD"}, []string{"t4"}},
		{"non-ascii ignores case", audit.Query{Text: "école/über"}, []string{"t3"}},
		{"quotes match their escape", audit.Query{Text: `"hello"`}, []string{"t2"}},
		{"backslash", audit.Query{Text: `c:\tmp`}, []string{"t2"}},
		{"json fragment", audit.Query{Text: `"user":"bob"`}, []string{"t2", "t4"}},
		{"with user", audit.Query{Text: "nginx", User: "alice", AfterSeq: 1}, []string{"t5"}},
		{"limit on the go path", audit.Query{Text: "É", Limit: 1}, []string{"t3"}},
		{"limit on the sql path", audit.Query{Text: "NGINX", Limit: 1}, []string{"t1"}},
		{"no match", audit.Query{Text: "mallory"}, nil},
		{"no match non-ascii", audit.Query{Text: "ñ"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := log.Search(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, ev := range got {
				ids = append(ids, ev.ID)
			}
			if diff := cmp.Diff(tc.want, ids); diff != "" {
				t.Errorf("Search(%+v) (-want +got):\n%s", tc.q, diff)
			}
		})
	}
}

func TestAuditGroupCommit(t *testing.T) {
	b := openTest(t, Config{})
	ctx := t.Context()
	const callers, each = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for c := range callers {
		wg.Go(func() {
			log := b.AuditLog() // separate handles share one queue
			for i := range each {
				ev, err := log.Append(ctx, audit.Event{Event: audit.Exec, ID: fmt.Sprintf("c%d-%d", c, i)})
				if err == nil && (ev.Seq <= 0 || ev.Hash == "") {
					err = fmt.Errorf("appended event %+v lacks seq or hash", ev)
				}
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if res := mustVerify(t, b.AuditLog()); !res.OK || res.Checked != callers*each {
		t.Fatalf("Verify = %+v (%v)", res, res.FirstBad)
	}
	// A cancelled caller gets its context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.AuditLog().Emit(cctx, audit.Event{Event: audit.Exec}); err == nil {
		// The event may commit before the cancellation is noticed; Emit
		// may then succeed. Either way the chain stays intact.
		t.Log("Emit with a cancelled context committed before noticing")
	}
	if res := mustVerify(t, b.AuditLog()); !res.OK {
		t.Fatalf("Verify = %+v", res)
	}
}

func TestAuditEmitAfterClose(t *testing.T) {
	b := openTest(t, Config{})
	log := b.AuditLog()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := log.Emit(ctx, audit.Event{Event: audit.Exec}); err == nil {
		t.Error("Emit after Close succeeded")
	}
	if _, err := log.Verify(ctx); err == nil {
		t.Error("Verify after Close succeeded")
	}
	if _, err := log.DeleteBefore(ctx, time.Now()); err == nil {
		t.Error("DeleteBefore after Close succeeded")
	}
	if _, err := log.Subscribe(ctx, 0); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
}
