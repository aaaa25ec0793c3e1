package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
)

const (
	benchEvents = 1_000_000
	benchUsers  = 100
	benchStep   = 100 * time.Millisecond // one event every 100ms: ~28h of log
)

// benchAuditDB opens the cached 1M-event database (built once per machine in
// os.TempDir, rebuilt when missing or incomplete). Benchmarks only read it.
func benchAuditDB(b *testing.B) *AuditLog {
	b.Helper()
	path := filepath.Join(os.TempDir(), "warden-bench-audit-1m-v2", "audit.db")
	ctx := context.Background()
	open := func() *Backend {
		be, err := Open(ctx, Config{Path: path, ReapInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		return be
	}
	be := open()
	var n int64
	if err := be.reader.QueryRowContext(ctx, `SELECT count(*) FROM audit_events`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n != benchEvents {
		be.Close()
		if err := os.RemoveAll(filepath.Dir(path)); err != nil {
			b.Fatal(err)
		}
		be = open()
		start := time.Now()
		log := be.AuditLog()
		batch := make([]audit.Event, 0, 10_000)
		for i := range benchEvents {
			batch = append(batch, benchEvent(i))
			if len(batch) == cap(batch) {
				if err := log.EmitBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		b.Logf("built %d-event audit database in %v: %s", benchEvents, time.Since(start).Round(time.Millisecond), path)
	}
	b.Cleanup(func() { be.Close() })
	return be.AuditLog()
}

func benchEvent(i int) audit.Event {
	return audit.Event{
		Event: []string{audit.Exec, audit.SessionStart, audit.SFTP, audit.UserLogin}[i%4],
		ID:    fmt.Sprintf("bench-%08d", i), Time: auditEpoch.Add(time.Duration(i) * benchStep),
		User: fmt.Sprintf("user%03d", i%benchUsers), Login: "root", Node: fmt.Sprintf("node%02d", i%37),
		SessionID: fmt.Sprintf("s%d", i/10), RemoteAddr: "10.1.2.3:50000", Success: i%13 != 0,
		Fields: map[string]any{"command": "systemctl status nginx", "exit_code": i % 3},
	}
}

// BenchmarkAuditSearchByUserTime1M searches one user's events in a one-hour
// window of a 1,000,000-event log (~360 matches).
func BenchmarkAuditSearchByUserTime1M(b *testing.B) {
	log := benchAuditDB(b)
	ctx := context.Background()
	span := time.Duration(benchEvents) * benchStep
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		// Walk windows and users across the whole log.
		since := auditEpoch.Add(time.Duration(i*7919) % (span - time.Hour)).Truncate(time.Second)
		user := fmt.Sprintf("user%03d", i%benchUsers)
		evs, err := log.Search(ctx, audit.Query{User: user, Since: since, Until: since.Add(time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		if len(evs) < 300 || len(evs) > 400 {
			b.Fatalf("user %s window %v: %d events, want ~360", user, since, len(evs))
		}
		i++
	}
}

// BenchmarkAuditSearchText1M is a free-text search over the 1M log: a scan,
// reported for comparison with the indexed searches.
func BenchmarkAuditSearchText1M(b *testing.B) {
	log := benchAuditDB(b)
	ctx := context.Background()
	for b.Loop() {
		evs, err := log.Search(ctx, audit.Query{Text: "BENCH-00999999"})
		if err != nil {
			b.Fatal(err)
		}
		if len(evs) != 1 {
			b.Fatalf("got %d events", len(evs))
		}
	}
}

// BenchmarkAuditVerify1M verifies the whole 1M-event chain.
func BenchmarkAuditVerify1M(b *testing.B) {
	log := benchAuditDB(b)
	ctx := context.Background()
	var checked int64
	start := time.Now()
	for b.Loop() {
		res, err := log.Verify(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if !res.OK {
			b.Fatalf("verify: %v", res.FirstBad)
		}
		checked += res.Checked
	}
	b.ReportMetric(float64(checked)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkAuditIngest measures durable (fsynced) audit writes: one caller
// emitting alone, many callers emitting at once (group commit), and
// EmitBatch.
func BenchmarkAuditIngest(b *testing.B) {
	ev := audit.Event{Event: audit.Exec, User: "alice", Node: "web1", SessionID: "s1",
		Login: "root", Success: true, Fields: map[string]any{"command": "uptime"}}
	report := func(b *testing.B, events int64, start time.Time) {
		b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	}
	b.Run("emit/serial", func(b *testing.B) {
		log := openTest(b, Config{}).AuditLog()
		ctx := context.Background()
		start := time.Now()
		var n int64
		for b.Loop() {
			if err := log.Emit(ctx, ev); err != nil {
				b.Fatal(err)
			}
			n++
		}
		report(b, n, start)
	})
	for _, callers := range []int{8, 64} {
		b.Run(fmt.Sprintf("emit/parallel-%d", callers), func(b *testing.B) {
			log := openTest(b, Config{}).AuditLog()
			ctx := context.Background()
			b.SetParallelism(max(1, callers/2)) // GOMAXPROCS is 2 here
			var n atomic.Int64
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := log.Emit(ctx, ev); err != nil {
						b.Error(err)
						return
					}
					n.Add(1)
				}
			})
			report(b, n.Load(), start)
		})
	}
	// Many nodes each sending a small batch at once (what auth sees
	// from node agents).
	b.Run("batch-5/parallel-64", func(b *testing.B) {
		log := openTest(b, Config{}).AuditLog()
		ctx := context.Background()
		b.SetParallelism(32)
		batch := []audit.Event{ev, ev, ev, ev, ev}
		var n atomic.Int64
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := log.EmitBatch(ctx, batch); err != nil {
					b.Error(err)
					return
				}
				n.Add(int64(len(batch)))
			}
		})
		report(b, n.Load(), start)
	})
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch-%d", size), func(b *testing.B) {
			log := openTest(b, Config{}).AuditLog()
			ctx := context.Background()
			batch := make([]audit.Event, size)
			for i := range batch {
				batch[i] = ev
			}
			start := time.Now()
			var n int64
			for b.Loop() {
				if err := log.EmitBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
				n += int64(size)
			}
			report(b, n, start)
		})
	}
}
