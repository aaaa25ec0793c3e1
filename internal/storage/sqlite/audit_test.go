package sqlite

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/storagetest"
)

var auditEpoch = time.Date(2032, 5, 6, 7, 8, 9, 0, time.UTC)

func TestAuditEmitFillsFields(t *testing.T) {
	clock := storagetest.NewClock(auditEpoch)
	log := openTest(t, Config{Now: clock.Now}).AuditLog()
	ctx := t.Context()

	got, err := log.Append(ctx, audit.Event{Event: audit.UserLogin, User: "alice", Success: true,
		Fields: map[string]any{"method": "totp"}})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got.ID) {
		t.Errorf("ID = %q, want 32 hex digits", got.ID)
	}
	if !got.Time.Equal(auditEpoch) || got.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want %v UTC", got.Time, auditEpoch)
	}
	if got.Seq <= 0 {
		t.Errorf("Seq = %d", got.Seq)
	}

	// Caller-supplied ID and Time are kept (Time normalised to UTC).
	own := time.Date(2032, 1, 1, 12, 0, 0, 0, time.FixedZone("X", 3600))
	second, err := log.Append(ctx, audit.Event{Event: audit.Exec, ID: "my-id", Time: own, User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != "my-id" || !second.Time.Equal(own) || second.Time.Location() != time.UTC || second.Seq <= got.Seq {
		t.Errorf("second event = %+v", second)
	}
	// IDs are unique: a second event with the same ID is a retried
	// delivery and is not stored again (see TestAuditEmitIsIdempotentByID).
	if err := log.Emit(ctx, audit.Event{}); err == nil {
		t.Error("Emit without an event name succeeded")
	}

	evs, err := log.Search(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]audit.Event{got, second}, evs); diff != "" {
		t.Errorf("Search returned (-want +got):\n%s", diff)
	}
}

func TestAuditSearch(t *testing.T) {
	log := openTest(t, Config{}).AuditLog()
	ctx := t.Context()
	at := func(min int) time.Time { return auditEpoch.Add(time.Duration(min) * time.Minute) }
	evs := []audit.Event{
		{Event: audit.UserLogin, User: "alice", Time: at(0), ID: "e1"},
		{Event: audit.SessionStart, User: "alice", Node: "web1", SessionID: "s1", Time: at(1), ID: "e2"},
		{Event: audit.Exec, User: "alice", Node: "web1", SessionID: "s1", Time: at(2), ID: "e3"},
		{Event: audit.UserLogin, User: "bob", Time: at(3), ID: "e4"},
		{Event: audit.SessionStart, User: "bob", Node: "db1", SessionID: "s2", Time: at(4), ID: "e5"},
		{Event: audit.SessionEnd, User: "alice", Node: "web1", SessionID: "s1", Time: at(5), ID: "e6"},
		// Emitted late with an earlier time: ordering is by Seq, not Time.
		{Event: audit.UserLogin, User: "carol", Time: at(-10), ID: "e7"},
	}
	if err := log.EmitBatch(ctx, evs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    audit.Query
		want []string
	}{
		{"all", audit.Query{}, []string{"e1", "e2", "e3", "e4", "e5", "e6", "e7"}},
		{"type", audit.Query{Type: audit.UserLogin}, []string{"e1", "e4", "e7"}},
		{"user", audit.Query{User: "alice"}, []string{"e1", "e2", "e3", "e6"}},
		{"node", audit.Query{Node: "web1"}, []string{"e2", "e3", "e6"}},
		{"session", audit.Query{SessionID: "s2"}, []string{"e5"}},
		{"user and type", audit.Query{User: "bob", Type: audit.SessionStart}, []string{"e5"}},
		{"since inclusive", audit.Query{Since: at(3)}, []string{"e4", "e5", "e6"}},
		{"until exclusive", audit.Query{Until: at(1)}, []string{"e1", "e7"}},
		{"window", audit.Query{Since: at(1), Until: at(5), User: "alice"}, []string{"e2", "e3"}},
		{"limit", audit.Query{Limit: 2}, []string{"e1", "e2"}},
		{"no match", audit.Query{User: "mallory"}, nil},
	}
	seqOf := map[string]int64{}
	all, err := log.Search(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range all {
		seqOf[ev.ID] = ev.Seq
	}
	tests = append(tests, struct {
		name string
		q    audit.Query
		want []string
	}{"after seq", audit.Query{AfterSeq: seqOf["e5"]}, []string{"e6", "e7"}})

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

func TestAuditSearchPaging(t *testing.T) {
	log := openTest(t, Config{}).AuditLog()
	ctx := t.Context()
	const total = 2*audit.DefaultLimit + 500
	// Bulk-load with one statement: emitting thousands of events one by
	// one is slow under the race detector and not what this test is about.
	if _, err := log.b.writer.ExecContext(ctx, `
		WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
		INSERT INTO audit_events (id, time, event, user, body)
		SELECT printf('id%d', i), i, 'exec', 'u' || (i % 3),
		       json_object('event', 'exec', 'id', printf('id%d', i), 'user', 'u' || (i % 3),
		                   'time', '2032-01-01T00:00:00Z', 'success', json('false'))
		FROM n`, total); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		limit, want int
	}{{0, audit.DefaultLimit}, {-5, audit.DefaultLimit}, {10, 10}, {total + 1, total}}
	for _, tc := range tests {
		got, err := log.Search(ctx, audit.Query{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Errorf("Limit %d returned %d events, want %d", tc.limit, len(got), tc.want)
		}
	}
	// Paging by AfterSeq visits every event once, in order.
	var after int64
	seen := 0
	for {
		page, err := log.Search(ctx, audit.Query{User: "u1", AfterSeq: after, Limit: 700})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, ev := range page {
			if ev.Seq <= after || ev.User != "u1" {
				t.Fatalf("page event %+v after seq %d", ev, after)
			}
			after = ev.Seq
			seen++
		}
	}
	if want := (total + 1) / 3; seen != want {
		t.Fatalf("paged through %d events for u1, want %d", seen, want)
	}
}

func TestAuditEmitBatchIsAtomic(t *testing.T) {
	log := openTest(t, Config{}).AuditLog()
	ctx := t.Context()
	if err := log.EmitBatch(ctx, []audit.Event{{Event: audit.Exec, ID: "dup"}}); err != nil {
		t.Fatal(err)
	}
	// One bad event fails the whole batch: nothing of it is stored.
	err := log.EmitBatch(ctx, []audit.Event{{Event: audit.Exec, ID: "fresh"}, {ID: "nameless"}})
	if err == nil {
		t.Fatal("EmitBatch with an invalid event succeeded")
	}
	got, err := log.Search(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "dup" {
		t.Fatalf("after failed batch the log holds %+v, want only the first event", got)
	}
	if err := log.EmitBatch(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
}

func TestAuditConcurrentEmit(t *testing.T) {
	b := openTest(t, Config{})
	log := b.AuditLog()
	ctx := t.Context()
	const workers, each = 4, 10
	errs := make(chan error, workers*each)
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				errs <- log.Emit(ctx, audit.Event{Event: audit.Exec, User: fmt.Sprintf("w%d", w), Fields: map[string]any{"i": i}})
				// Interleave kv writes: both share the single writer.
				if _, err := b.Put(ctx, kvItem(w, i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := log.Search(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != workers*each {
		t.Fatalf("%d events stored, want %d", len(got), workers*each)
	}
}

func BenchmarkAuditEmit(b *testing.B) {
	log := openTest(b, Config{}).AuditLog()
	ctx := context.Background()
	ev := audit.Event{Event: audit.Exec, User: "alice", Node: "web1", SessionID: "s1",
		Login: "root", Success: true, Fields: map[string]any{"command": "uptime"}}
	b.ReportAllocs()
	for b.Loop() {
		if err := log.Emit(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuditSearchByUser(b *testing.B) {
	log := openTest(b, Config{}).AuditLog()
	ctx := context.Background()
	const users, total = 100, 50000
	batch := make([]audit.Event, 0, 1000)
	for i := range total {
		batch = append(batch, audit.Event{Event: audit.Exec, User: fmt.Sprintf("user%03d", i%users),
			Time: auditEpoch.Add(time.Duration(i) * time.Second), Fields: map[string]any{"command": strings.Repeat("x", 40)}})
		if len(batch) == cap(batch) {
			if err := log.EmitBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		evs, err := log.Search(ctx, audit.Query{User: fmt.Sprintf("user%03d", i%users), Limit: 100})
		if err != nil {
			b.Fatal(err)
		}
		if len(evs) != 100 {
			b.Fatalf("got %d events", len(evs))
		}
		i++
	}
}

func TestAuditEmitIsIdempotentByID(t *testing.T) {
	log := openTest(t, Config{}).AuditLog()
	ctx := context.Background()
	ev := audit.Event{Event: "exec", ID: "retried-1", User: "dev"}
	first, err := log.Append(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	again, err := log.Append(ctx, ev)
	if err != nil {
		t.Fatalf("retried event refused: %v", err)
	}
	if again.Seq != first.Seq {
		t.Fatalf("retry got seq %d, first %d", again.Seq, first.Seq)
	}
	if err := log.EmitBatch(ctx, []audit.Event{ev, {Event: "exec", ID: "retried-2"}}); err != nil {
		t.Fatal(err)
	}
	evs, err := log.Search(ctx, audit.Query{Type: "exec"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2 (no duplicates)", len(evs))
	}
}

// TestAuditSearchNewestFirst: Newest pages from the end of the log with
// BeforeSeq, within the filter, and meets the oldest-first pages.
func TestAuditSearchNewestFirst(t *testing.T) {
	_, log := chainFixture(t, 20)
	var seqs []int64
	q := audit.Query{User: "bob", Newest: true, Limit: 3}
	for {
		evs, err := log.Search(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.User != "bob" {
				t.Fatalf("event of %s", ev.User)
			}
			seqs = append(seqs, ev.Seq)
		}
		if len(evs) < q.Limit {
			break
		}
		q.BeforeSeq = evs[len(evs)-1].Seq
	}
	want := []int64{20, 18, 16, 14, 12, 10, 8, 6, 4, 2}
	if fmt.Sprint(seqs) != fmt.Sprint(want) {
		t.Fatalf("newest first: %v, want %v", seqs, want)
	}
	evs, err := log.Search(t.Context(), audit.Query{User: "bob", AfterSeq: 4, BeforeSeq: 10})
	if err != nil || len(evs) != 2 || evs[0].Seq != 6 || evs[1].Seq != 8 {
		t.Fatalf("between 4 and 10: %v %+v", err, evs)
	}
}
