package storagetest

import (
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage"
)

// BenchFactory opens a fresh backend and its audit log for a benchmark
// (closed at cleanup); another opens a second instance on the same store,
// as a second auth process would.
type BenchFactory func(b *testing.B) (be storage.Backend, log AuditLog, another func() (storage.Backend, AuditLog))

// RunBenchmarks measures a driver the same way as every other: writes per
// second (one writer, and many at once), reads, watch latency (a write
// to the event at a watcher on the same instance and on another one), and
// audit appends per second. Run both drivers in one command to compare:
//
//	go test -tags integration -run '^$' -bench Driver ./internal/storage/sqlite ./internal/storage/postgres
//
// crossInstanceWatch says whether a watch sees the writes of another
// instance (PostgreSQL: yes; SQLite: its watches fan out in one process
// only, so that benchmark is left out for it).
func RunBenchmarks(b *testing.B, f BenchFactory, crossInstanceWatch bool) {
	b.Run("Put", func(b *testing.B) {
		be, _, _ := f(b)
		val := make([]byte, 256)
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if _, err := be.Put(b.Context(), storage.Item{Key: fmt.Sprintf("/bench/%d", i%1000), Value: val}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	})
	b.Run("PutParallel", func(b *testing.B) {
		be, _, _ := f(b)
		val := make([]byte, 256)
		var n atomic.Int64
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				if _, err := be.Put(b.Context(), storage.Item{Key: fmt.Sprintf("/bench/%d", i%1000), Value: val}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	})
	b.Run("Get", func(b *testing.B) {
		be, _, _ := f(b)
		if _, err := be.Put(b.Context(), storage.Item{Key: "/bench/get", Value: make([]byte, 256)}); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			if _, err := be.Get(b.Context(), "/bench/get"); err != nil {
				b.Fatal(err)
			}
		}
	})
	watchLatency := func(b *testing.B, remote bool) {
		be, _, another := f(b)
		watchOn := be
		if remote {
			watchOn, _ = another()
		}
		// A fan-out of watchers, as auth has (roles, locks, nodes...).
		const fanout = 16
		chans := make([]<-chan storage.Event, fanout)
		for i := range chans {
			ch, err := watchOn.Watch(b.Context(), "/bench/")
			if err != nil {
				b.Fatal(err)
			}
			chans[i] = ch
		}
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			start := time.Now()
			it, err := be.Put(b.Context(), storage.Item{Key: fmt.Sprintf("/bench/%d", i), Value: []byte("v")})
			if err != nil {
				b.Fatal(err)
			}
			for _, ch := range chans {
				for ev := range ch {
					if ev.Item.Revision == it.Revision {
						break
					}
				}
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		if len(lat) > 0 {
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		}
	}
	b.Run("WatchFanout16", func(b *testing.B) { watchLatency(b, false) })
	if crossInstanceWatch {
		b.Run("WatchFanout16OtherInstance", func(b *testing.B) { watchLatency(b, true) })
	}
	RunAuditBenchmarks(b, f)
}

// RunAuditBenchmarks measures audit appends per second: 16 concurrent
// appenders of single events on one instance; many nodes' batches over two
// instances (AuditIngest); 16 appenders over two instances.
func RunAuditBenchmarks(b *testing.B, f BenchFactory) {
	b.Run("AuditAppendParallel", func(b *testing.B) {
		_, log, _ := f(b)
		b.SetParallelism(16)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := log.Emit(b.Context(), audit.Event{Event: audit.Exec, User: "bench", Fields: map[string]any{"command": "ls -la"}}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	// AuditIngest is what auth's event ingest does under load: many nodes
	// each hand over a batch of their journal's events (with the ids they
	// retry with), spread over two instances writing one chain.
	b.Run("AuditIngest", func(b *testing.B) {
		_, log, another := f(b)
		_, log2 := another()
		const senders, batch = 64, 50
		var next, sender atomic.Int64
		b.SetParallelism(senders / runtime.GOMAXPROCS(0))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			id := sender.Add(1)
			l := log
			if id%2 == 0 {
				l = log2
			}
			evs := make([]audit.Event, batch)
			for pb.Next() {
				first := next.Add(batch) - batch
				for i := range evs {
					evs[i] = audit.Event{ID: fmt.Sprintf("node%d-%d", id, first+int64(i)), Event: audit.Exec, User: "bench",
						Node: fmt.Sprintf("node%d", id), SessionID: "s", Fields: map[string]any{"command": "ls -la"}}
				}
				if err := l.EmitBatch(b.Context(), evs); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "events/s")
		b.StopTimer()
		res, err := log.Verify(b.Context())
		if err != nil || !res.OK || res.Checked != int64(b.N)*batch {
			b.Fatalf("after the ingest: verify %+v, %v; want %d events checked, intact", res, err, b.N*batch)
		}
	})
	b.Run("AuditAppendTwoInstances", func(b *testing.B) {
		_, log, another := f(b)
		_, log2 := another()
		var n atomic.Int64
		b.SetParallelism(16)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			l := log
			if n.Add(1)%2 == 0 {
				l = log2
			}
			for pb.Next() {
				if err := l.Emit(b.Context(), audit.Event{Event: audit.Exec, User: "bench"}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
