//go:build integration

package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/storage/postgres/pgtest"
)

// load writes to several instances on one database at once, as auth
// instances under traffic do: key-value puts ("locks"), audit batches with
// ids (a node's journal) and single audit events with generated ids (auth's
// own), and a watcher on the last instance. It remembers what was
// acknowledged, to check afterwards that nothing acknowledged was lost.
type load struct {
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	puts    map[string]int64 // key → acknowledged revision
	audited map[string]bool  // acknowledged event ids
	errs    []error
	nPuts   atomic.Int64
	nAudit  atomic.Int64

	watchMu     sync.Mutex
	watched     map[int64]string // revision → key, as the watcher saw them
	watchClosed bool
}

func startLoad(t *testing.T, instances []*Backend) *load {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	l := &load{ctx: ctx, stop: stop, puts: map[string]int64{}, audited: map[string]bool{}, watched: map[int64]string{}}
	t.Cleanup(l.finish)
	ch, err := instances[len(instances)-1].Watch(t.Context(), "/locks/")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range ch {
			l.watchMu.Lock()
			l.watched[ev.Item.Revision] = ev.Item.Key
			l.watchMu.Unlock()
		}
		l.watchMu.Lock()
		l.watchClosed = true
		l.watchMu.Unlock()
	}()
	fail := func(err error) {
		l.mu.Lock()
		l.errs = append(l.errs, err)
		l.mu.Unlock()
	}
	for i, be := range instances {
		for w := range 4 {
			l.wg.Add(1)
			go func() { // locks
				defer l.wg.Done()
				for n := 0; ctx.Err() == nil; n++ {
					key := fmt.Sprintf("/locks/i%d-w%d-%d", i, w, n)
					it, err := be.Put(context.Background(), storage.Item{Key: key, Value: []byte(key)})
					if err != nil {
						fail(err)
						continue
					}
					l.mu.Lock()
					l.puts[key] = it.Revision
					l.mu.Unlock()
					l.nPuts.Add(1)
				}
			}()
		}
		log := be.AuditLog()
		for w := range 4 {
			l.wg.Add(1)
			go func() { // a node's journal: batches with ids
				defer l.wg.Done()
				for n := 0; ctx.Err() == nil; n++ {
					evs := make([]audit.Event, 10)
					for k := range evs {
						evs[k] = audit.Event{ID: fmt.Sprintf("i%d-n%d-%d-%d", i, w, n, k), Event: audit.Exec, User: "u"}
					}
					if err := log.EmitBatch(context.Background(), evs); err != nil {
						fail(err)
						continue
					}
					l.mu.Lock()
					for _, ev := range evs {
						l.audited[ev.ID] = true
					}
					l.mu.Unlock()
					l.nAudit.Add(int64(len(evs)))
				}
			}()
			l.wg.Add(1)
			go func() { // auth's own events: generated ids
				defer l.wg.Done()
				for ctx.Err() == nil {
					ev, err := log.Append(context.Background(), audit.Event{Event: "user.login", User: "u"})
					if err != nil {
						fail(err)
						continue
					}
					l.mu.Lock()
					l.audited[ev.ID] = true
					l.mu.Unlock()
					l.nAudit.Add(1)
				}
			}()
		}
	}
	return l
}

// progress waits until at least n more puts and n more audit events than
// now are acknowledged.
func (l *load) progress(t *testing.T, n int64) {
	t.Helper()
	p, a := l.nPuts.Load(), l.nAudit.Load()
	if err := patience.Retry(t, func() error {
		if l.nPuts.Load() >= p+n && l.nAudit.Load() >= a+n {
			return nil
		}
		return fmt.Errorf("the load made no progress: %d puts, %d audit events acknowledged; errors: %d",
			l.nPuts.Load(), l.nAudit.Load(), l.nErrs())
	}); err != nil {
		t.Fatal(err)
	}
}

func (l *load) nErrs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errs)
}

func (l *load) finish() {
	l.stop()
	l.wg.Wait()
}

// check stops the load and checks, on be: no write failed (each waited for
// the database or was retried), every acknowledged put is stored and was
// seen by the watcher (which never had to resync), and the audit log is one
// intact chain holding every acknowledged event exactly once.
func (l *load) check(t *testing.T, be *Backend) {
	t.Helper()
	l.finish()
	for i, err := range l.errs {
		if i < 5 {
			t.Errorf("a write failed: %v", err)
		}
	}
	if len(l.errs) > 0 {
		t.Fatalf("%d writes failed", len(l.errs))
	}
	for key, rev := range l.puts {
		it, err := be.Get(t.Context(), key)
		if err != nil || it.Revision != rev || string(it.Value) != key {
			t.Fatalf("acknowledged put %s at revision %d: got %+v, %v", key, rev, it, err)
		}
	}
	if err := patience.Retry(t, func() error {
		l.watchMu.Lock()
		defer l.watchMu.Unlock()
		if l.watchClosed {
			return fmt.Errorf("the watch was closed (told to resync): it should have resumed")
		}
		for key, rev := range l.puts {
			if l.watched[rev] != key {
				return fmt.Errorf("the watcher did not see the put of %s at revision %d", key, rev)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	res, err := be.AuditLog().Verify(t.Context())
	if err != nil || !res.OK {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	seen := map[string]int{}
	for after := int64(0); ; {
		evs, err := be.AuditLog().Search(t.Context(), audit.Query{AfterSeq: after, Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			seen[ev.ID]++
		}
		after = evs[len(evs)-1].Seq
	}
	for id, n := range seen {
		if n > 1 {
			t.Fatalf("event %s is in the chain %d times", id, n)
		}
	}
	for id := range l.audited {
		if seen[id] != 1 {
			t.Fatalf("acknowledged audit event %s is not in the log", id)
		}
	}
	t.Logf("%d puts and %d audit events acknowledged, all stored once; chain of %d events verifies; watcher saw every put",
		len(l.puts), len(l.audited), res.Checked)
}

// PostgreSQL restarted under load, twice: a fast shutdown (sessions ended,
// the server back after a checkpoint) and a crash (immediate: recovery from
// the write-ahead log). Every write in flight waits for the database and is
// done once, nothing acknowledged is lost, the audit log stays one chain
// without duplicates, and the watcher resumes without missing a put.
func TestSurvivesPostgresRestart(t *testing.T) {
	srv := pgtest.NewServer(t, pgtest.ServerOptions{})
	srv.CreateDB("warden")
	open := func() *Backend {
		b, err := Open(t.Context(), Config{URL: srv.URL("warden"), RetryWait: 2 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	a, b := open(), open()
	l := startLoad(t, []*Backend{a, b})
	for _, mode := range []string{"fast", "immediate"} {
		l.progress(t, 200)
		start := time.Now()
		srv.Restart(mode)
		t.Logf("restart (%s) took %v", mode, time.Since(start))
		l.progress(t, 200)
	}
	l.check(t, a)
}

// PostgreSQL fails over under load: a primary with a synchronous
// streaming-replication standby (both started here), Warden given both
// hosts with target_session_attrs=read-write; the primary is killed
// (SIGKILL, as a machine that dies) and the standby promoted. Warden
// carries on against the new primary by itself: writes in flight wait and
// are retried, nothing acknowledged is lost (every acknowledged commit had
// reached the standby), the chain has no duplicate and the watcher misses
// no put.
func TestSurvivesPostgresFailover(t *testing.T) {
	primary := pgtest.NewServer(t, pgtest.ServerOptions{})
	primary.CreateDB("warden")
	standby := primary.NewStandby(pgtest.ServerOptions{})
	// Commits wait until the standby has them on disk.
	primary.Exec("postgres", `ALTER SYSTEM SET synchronous_standby_names = 'standby'`)
	primary.Exec("postgres", `SELECT pg_reload_conf()`)
	waitSync(t, primary)

	url := fmt.Sprintf("postgres://postgres@%s,%s/warden?sslmode=disable&target_session_attrs=read-write",
		primary.Addr(), standby.Addr())
	open := func() *Backend {
		b, err := Open(t.Context(), Config{URL: url, RetryWait: 2 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	a, b := open(), open()
	l := startLoad(t, []*Backend{a, b})
	l.progress(t, 200)
	start := time.Now()
	primary.Kill()
	standby.Promote()
	t.Logf("primary killed and standby promoted in %v", time.Since(start))
	l.progress(t, 200)
	t.Logf("load going again %v after the kill", time.Since(start))
	l.check(t, a)
}

// waitSync waits until the primary's standby is synchronous.
func waitSync(t *testing.T, primary *pgtest.Server) {
	t.Helper()
	if err := patience.Retry(t, func() error {
		c, err := pgx.Connect(t.Context(), primary.URL("postgres"))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		var state string
		if err := c.QueryRow(t.Context(), `SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'`).Scan(&state); err != nil {
			return err
		}
		if state != "sync" {
			return fmt.Errorf("standby is %s, not sync", state)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// What an asynchronous standby can lose, and what Warden does about it:
// commits acknowledged while the standby was away are gone after the
// failover, and the new primary hands out their revisions again. A watcher
// that had seen them must not be fed the new changes as if nothing
// happened (it would miss writes under reused revisions): it is closed, to
// re-list and watch again.
func TestAsyncFailoverMakesWatchersResync(t *testing.T) {
	primary := pgtest.NewServer(t, pgtest.ServerOptions{})
	primary.CreateDB("warden")
	standby := primary.NewStandby(pgtest.ServerOptions{})
	url := fmt.Sprintf("postgres://postgres@%s,%s/warden?sslmode=disable&target_session_attrs=read-write",
		primary.Addr(), standby.Addr())
	be, err := Open(t.Context(), Config{URL: url, RetryWait: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ch, err := be.Watch(t.Context(), "/locks/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := be.Put(t.Context(), storage.Item{Key: "/locks/kept", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	recv(t, ch)
	// The standby has everything so far; then it goes away.
	waitReplayed(t, primary)
	standby.Stop("fast")
	for _, k := range []string{"/locks/lost1", "/locks/lost2"} {
		if _, err := be.Put(t.Context(), storage.Item{Key: k, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		recv(t, ch)
	}
	// The watcher reads again only once the new primary has gone past
	// the revision it had delivered: the revision counter alone would not
	// tell, the changes under the reused numbers do.
	resume := be.PauseWatch()
	primary.Kill()
	standby.Start()
	standby.Promote()
	for _, k := range []string{"/locks/after1", "/locks/after2", "/locks/after3"} {
		if _, err := be.Put(t.Context(), storage.Item{Key: k, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	resume()
	if _, err := be.Get(t.Context(), "/locks/lost1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("get a put the asynchronous standby never had: %v; want it lost", err)
	}
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return // told to resync
			}
			t.Fatalf("the watcher got %s at revision %d after the database's revisions went back; want it closed", ev.Item.Key, ev.Item.Revision)
		case <-time.After(patience.Left(t)):
			t.Fatal("the watcher was not closed")
		}
	}
}

// waitReplayed waits until the standby has replayed all the primary wrote.
func waitReplayed(t *testing.T, primary *pgtest.Server) {
	t.Helper()
	if err := patience.Retry(t, func() error {
		c, err := pgx.Connect(t.Context(), primary.URL("postgres"))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		var caughtUp bool
		if err := c.QueryRow(t.Context(), `SELECT replay_lsn >= pg_current_wal_lsn() FROM pg_stat_replication WHERE application_name = 'standby'`).Scan(&caughtUp); err != nil {
			return err
		}
		if !caughtUp {
			return errors.New("standby behind")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
