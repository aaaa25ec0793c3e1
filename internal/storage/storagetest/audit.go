package storagetest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
)

// AuditLog is what a driver's audit log offers auth: append (group
// committed, idempotent by id), batches, search, subscribe, verify,
// retention and signed checkpoints.
type AuditLog interface {
	audit.Store
	audit.BatchEmitter
	audit.Subscriber
	audit.Verifier
	audit.Retainer
	Append(ctx context.Context, ev audit.Event) (audit.Event, error)
	AppendCheckpoint(ctx context.Context, after audit.ChainPos,
		sign func(seq int64, hash []byte) (audit.Event, error)) (audit.Event, *audit.BadEvent, error)
	LastCheckpoint(ctx context.Context) (audit.Event, bool, error)
}

// AuditFactory opens a fresh, empty audit log whose default event times
// follow now, and returns a second function that opens another handle on
// the SAME log as a separate instance would (another Backend on the same
// file or database: its own connections, queue and subscribers). Both are
// closed at cleanup.
type AuditFactory func(t *testing.T, now func() time.Time) (log AuditLog, another func() AuditLog)

type auditEnv struct {
	t       *testing.T
	opt     AuditOptions
	log     AuditLog
	another func() AuditLog
	clock   *Clock
	ctx     context.Context
}

// AuditOptions says what a driver offers besides what every one must.
type AuditOptions struct {
	// CrossInstanceSubscribe: a subscriber sees the events another
	// instance appends as they commit (PostgreSQL). SQLite's subscribers
	// are woken by their own process's commits only (one auth process).
	CrossInstanceSubscribe bool
}

// RunAuditConformance runs the audit log suite against logs from f. What
// it pins, a driver must do:
//
//   - seqs start at 1 and are gapless; each event's PrevHash is the hash
//     of the one before and Hash = audit.ChainHash(prev, canonical body);
//   - an event re-sent with the same ID is stored once (same seq);
//   - a batch is all or none;
//   - several instances appending at once form ONE chain that verifies,
//     with every event exactly once;
//   - Subscribe gives the backlog then live events in seq order, without
//     gaps or duplicates (those of other instances too, with
//     CrossInstanceSubscribe);
//   - signed checkpoints verify with their key, and retention leaves a
//     chain that still verifies.
func RunAuditConformance(t *testing.T, f AuditFactory, opt AuditOptions) {
	tests := []struct {
		name string
		run  func(e *auditEnv)
	}{
		{"Chain", testAuditChain},
		{"IdempotentID", testAuditIdempotent},
		{"BatchAllOrNone", testAuditBatch},
		{"Search", testAuditSearch},
		{"ConcurrentAppenders", testAuditConcurrent},
		{"Subscribe", testAuditSubscribe},
		{"Checkpoints", testAuditCheckpoints},
		{"Retention", testAuditRetention},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock(epoch)
			log, another := f(t, clock.Now)
			tc.run(&auditEnv{t: t, opt: opt, log: log, another: another, clock: clock, ctx: t.Context()})
		})
	}
}

func (e *auditEnv) emit(log AuditLog, ev audit.Event) audit.Event {
	e.t.Helper()
	out, err := log.Append(e.ctx, ev)
	if err != nil {
		e.t.Fatalf("Append %s: %v", ev.Event, err)
	}
	return out
}

func (e *auditEnv) verify(log AuditLog, keys ...ed25519.PublicKey) audit.VerifyResult {
	e.t.Helper()
	res, err := log.Verify(e.ctx, keys...)
	if err != nil {
		e.t.Fatalf("Verify: %v", err)
	}
	if !res.OK {
		e.t.Fatalf("Verify: not OK: %+v (first bad %+v)", res, res.FirstBad)
	}
	return res
}

// all returns every event, in seq order.
func (e *auditEnv) all(log AuditLog) []audit.Event {
	e.t.Helper()
	var out []audit.Event
	var after int64
	for {
		page, err := log.Search(e.ctx, audit.Query{AfterSeq: after, Limit: audit.MaxLimit})
		if err != nil {
			e.t.Fatalf("Search: %v", err)
		}
		out = append(out, page...)
		if len(page) < audit.MaxLimit {
			return out
		}
		after = page[len(page)-1].Seq
	}
}

// checkChain checks seqs are first, first+1, ... and each event chains to
// the one before.
func (e *auditEnv) checkChain(evs []audit.Event, first int64) {
	e.t.Helper()
	prev := ""
	for i, ev := range evs {
		if ev.Seq != first+int64(i) {
			e.t.Fatalf("event %d has seq %d, want %d", i, ev.Seq, first+int64(i))
		}
		if i > 0 && ev.PrevHash != prev {
			e.t.Fatalf("seq %d prev_hash %s, want the hash before it %s", ev.Seq, ev.PrevHash, prev)
		}
		want, err := audit.HashEvent(ev.PrevHash, ev)
		if err != nil || want != ev.Hash {
			e.t.Fatalf("seq %d hash %s, recomputed %s (%v)", ev.Seq, ev.Hash, want, err)
		}
		prev = ev.Hash
	}
}

func testAuditChain(e *auditEnv) {
	t := e.t
	first := e.emit(e.log, audit.Event{Event: audit.Exec, User: "alice"})
	if first.Seq != 1 || first.PrevHash != "" || first.ID == "" || !first.Time.Equal(epoch) {
		t.Fatalf("first event = %+v: want seq 1, no prev hash, an id, the backend clock's time", first)
	}
	for i := range 20 {
		e.emit(e.log, audit.Event{Event: audit.Exec, User: fmt.Sprint("u", i), Fields: map[string]any{"n": i}})
	}
	evs := e.all(e.log)
	if len(evs) != 21 {
		t.Fatalf("%d events, want 21", len(evs))
	}
	e.checkChain(evs, 1)
	res := e.verify(e.log)
	if res.Checked != 21 || res.Last.Seq != 21 || res.Last.Hash != evs[20].Hash {
		t.Fatalf("Verify = %+v", res)
	}
}

func testAuditIdempotent(e *auditEnv) {
	t := e.t
	a := e.emit(e.log, audit.Event{Event: audit.Exec, ID: "retried-1", User: "alice"})
	e.emit(e.log, audit.Event{Event: audit.Exec, User: "bob"})
	again := e.emit(e.log, audit.Event{Event: audit.Exec, ID: "retried-1", User: "alice"})
	if again.Seq != a.Seq || again.Hash != a.Hash {
		t.Fatalf("re-sent event stored as %+v, first copy %+v", again, a)
	}
	// In a batch too, and twice in one batch.
	if err := e.log.EmitBatch(e.ctx, []audit.Event{
		{Event: audit.Exec, ID: "retried-1"}, {Event: audit.Exec, ID: "b-2"}, {Event: audit.Exec, ID: "b-2"},
	}); err != nil {
		t.Fatal(err)
	}
	evs := e.all(e.log)
	if len(evs) != 3 {
		t.Fatalf("%d events after re-sends, want 3: %+v", len(evs), evs)
	}
	e.checkChain(evs, 1)
	e.verify(e.log)
}

func testAuditBatch(e *auditEnv) {
	t := e.t
	e.emit(e.log, audit.Event{Event: audit.Exec})
	// An event without a name is refused, and the batch with it.
	if err := e.log.EmitBatch(e.ctx, []audit.Event{{Event: audit.Exec}, {}}); err == nil {
		t.Fatal("batch with an unnamed event was accepted")
	}
	if err := e.log.EmitBatch(e.ctx, []audit.Event{{Event: audit.Exec, ID: "x1"}, {Event: audit.Exec, ID: "x2"}}); err != nil {
		t.Fatal(err)
	}
	evs := e.all(e.log)
	if len(evs) != 3 || evs[1].ID != "x1" || evs[2].ID != "x2" {
		t.Fatalf("events = %+v, want the first and the good batch", evs)
	}
	e.checkChain(evs, 1)
}

func testAuditSearch(e *auditEnv) {
	t := e.t
	e.emit(e.log, audit.Event{Event: audit.Exec, User: "alice", Node: "web1", SessionID: "s1", Fields: map[string]any{"command": "Uptime"}})
	e.clock.Advance(time.Minute)
	e.emit(e.log, audit.Event{Event: audit.Exec, User: "bob", Node: "db1", Fields: map[string]any{"command": "ls é"}})
	e.clock.Advance(time.Minute)
	e.emit(e.log, audit.Event{Event: audit.Retention, User: "alice"})
	count := func(q audit.Query) int {
		t.Helper()
		evs, err := e.log.Search(e.ctx, q)
		if err != nil {
			t.Fatalf("Search %+v: %v", q, err)
		}
		return len(evs)
	}
	for _, tc := range []struct {
		q    audit.Query
		want int
	}{
		{audit.Query{}, 3},
		{audit.Query{User: "alice"}, 2},
		{audit.Query{Node: "db1"}, 1},
		{audit.Query{SessionID: "s1"}, 1},
		{audit.Query{Type: audit.Retention}, 1},
		{audit.Query{Since: epoch.Add(time.Minute)}, 2},
		{audit.Query{Until: epoch.Add(time.Minute)}, 1},
		{audit.Query{AfterSeq: 1}, 2},
		{audit.Query{BeforeSeq: 3}, 2},
		{audit.Query{Text: "uPTIME"}, 1},
		{audit.Query{Text: "LS É"}, 1},
		{audit.Query{Limit: 2}, 2},
	} {
		if got := count(tc.q); got != tc.want {
			t.Errorf("Search %+v: %d events, want %d", tc.q, got, tc.want)
		}
	}
	newest, err := e.log.Search(e.ctx, audit.Query{Newest: true, Limit: 1})
	if err != nil || len(newest) != 1 || newest[0].Seq != 3 {
		t.Fatalf("newest = %+v, %v", newest, err)
	}
}

// testAuditConcurrent appends from two instances at once, several
// goroutines each: one chain, every event once.
func testAuditConcurrent(e *auditEnv) {
	t := e.t
	logs := []AuditLog{e.log, e.another()}
	const perWorker, workers = 40, 4
	var wg sync.WaitGroup
	errs := make(chan error, len(logs)*workers)
	for li, log := range logs {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWorker {
					ev := audit.Event{Event: audit.Exec, ID: fmt.Sprintf("i%d-w%d-%d", li, w, i)}
					var err error
					if i%5 == 4 { // some batches among the single appends
						err = log.EmitBatch(e.ctx, []audit.Event{ev, {Event: audit.Exec, ID: ev.ID + "b"}})
					} else {
						err = log.Emit(e.ctx, ev)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := len(logs) * workers * (perWorker + perWorker/5)
	for _, log := range logs {
		evs := e.all(log)
		if len(evs) != want {
			t.Fatalf("%d events, want %d", len(evs), want)
		}
		seen := map[string]bool{}
		for _, ev := range evs {
			if seen[ev.ID] {
				t.Fatalf("event %s stored twice", ev.ID)
			}
			seen[ev.ID] = true
		}
		e.checkChain(evs, 1)
		if res := e.verify(log); res.Checked != int64(want) {
			t.Fatalf("Verify checked %d, want %d", res.Checked, want)
		}
	}
}

func testAuditSubscribe(e *auditEnv) {
	t := e.t
	for i := range 5 {
		e.emit(e.log, audit.Event{Event: audit.Exec, ID: fmt.Sprint("old", i)})
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	ch, err := e.log.Subscribe(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	other := e.log
	if e.opt.CrossInstanceSubscribe {
		other = e.another()
	}
	// Live events from this instance and (where the driver offers it)
	// from another one.
	for i := range 5 {
		e.emit(e.log, audit.Event{Event: audit.Exec, ID: fmt.Sprint("here", i)})
		e.emit(other, audit.Event{Event: audit.Exec, ID: fmt.Sprint("there", i)})
	}
	timeout := time.After(patience.Left(t))
	for want := int64(3); want <= 15; want++ {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("subscription closed")
			}
			if ev.Seq != want {
				t.Fatalf("got seq %d (%s), want %d", ev.Seq, ev.ID, want)
			}
		case <-timeout:
			t.Fatalf("no event seq %d", want)
		}
	}
	cancel()
	for range ch { // closes once ctx ends
	}
}

func testAuditCheckpoints(e *auditEnv) {
	t := e.t
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(at time.Time) func(int64, []byte) (audit.Event, error) {
		return func(seq int64, hash []byte) (audit.Event, error) {
			return audit.SignCheckpoint(priv, seq, hash, at, 10*time.Minute), nil
		}
	}
	if ev, bad, err := e.log.AppendCheckpoint(e.ctx, audit.ChainPos{}, sign(epoch)); err != nil || bad != nil || ev.Seq != 0 {
		t.Fatalf("checkpoint of an empty log = %+v, %v, %v; want nothing appended", ev, bad, err)
	}
	for range 4 {
		e.emit(e.log, audit.Event{Event: audit.Exec})
	}
	cp, bad, err := e.log.AppendCheckpoint(e.ctx, audit.ChainPos{}, sign(epoch))
	if err != nil || bad != nil || cp.Seq != 5 || cp.Event != audit.Checkpoint {
		t.Fatalf("checkpoint = %+v, %v, %v", cp, bad, err)
	}
	if again, bad, err := e.log.AppendCheckpoint(e.ctx, audit.ChainPos{Seq: cp.Seq, Hash: cp.Hash}, sign(epoch)); err != nil || bad != nil || again.Seq != 0 {
		t.Fatalf("checkpoint with nothing new = %+v, %v, %v", again, bad, err)
	}
	e.emit(e.another(), audit.Event{Event: audit.Exec})
	cp2, bad, err := e.log.AppendCheckpoint(e.ctx, audit.ChainPos{Seq: cp.Seq, Hash: cp.Hash}, sign(epoch.Add(10*time.Minute)))
	if err != nil || bad != nil || cp2.Seq != 7 {
		t.Fatalf("second checkpoint = %+v, %v, %v", cp2, bad, err)
	}
	res := e.verify(e.log, pub)
	if res.Checkpoints != 2 || res.Signed.Seq != 6 || !res.SignaturesChecked {
		t.Fatalf("Verify = %+v", res)
	}
	last, ok, err := e.log.LastCheckpoint(e.ctx)
	if err != nil || !ok || last.Seq != 7 || last.Hash != cp2.Hash {
		t.Fatalf("LastCheckpoint = %+v, %v, %v", last, ok, err)
	}
	// Another key does not verify them.
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if res, err := e.log.Verify(e.ctx, other); err != nil || res.OK {
		t.Fatalf("Verify with another key = %+v, %v; want not OK", res, err)
	}
	// A wrong position is reported, nothing appended.
	e.emit(e.log, audit.Event{Event: audit.Exec})
	if ev, bad, err := e.log.AppendCheckpoint(e.ctx, audit.ChainPos{Seq: cp.Seq, Hash: hex.EncodeToString(make([]byte, 32))}, sign(epoch)); err != nil || bad == nil || ev.Seq != 0 {
		t.Fatalf("checkpoint after a rewritten position = %+v, %v, %v; want the bad event", ev, bad, err)
	}
}

func testAuditRetention(e *auditEnv) {
	t := e.t
	for i := range 6 {
		e.emit(e.log, audit.Event{Event: audit.Exec, ID: fmt.Sprint("r", i)})
		e.clock.Advance(time.Hour)
	}
	n, err := e.log.DeleteBefore(e.ctx, epoch.Add(3*time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("DeleteBefore = %d, %v; want 3", n, err)
	}
	evs := e.all(e.log)
	if len(evs) != 4 || evs[0].Seq != 4 || evs[3].Event != audit.Retention {
		t.Fatalf("after retention: %+v", evs)
	}
	e.checkChain(evs, 4)
	e.emit(e.another(), audit.Event{Event: audit.Exec})
	if res := e.verify(e.log); res.Checked != 5 || res.Last.Seq != 8 {
		t.Fatalf("Verify after retention = %+v", res)
	}
	if n, err := e.log.DeleteBefore(e.ctx, epoch); err != nil || n != 0 {
		t.Fatalf("DeleteBefore with nothing old = %d, %v", n, err)
	}
}
