package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/storage/storagetest"
)

func TestMain(m *testing.M) {
	os.Exit(patience.LeakCheck(m.Run()))
}

// openTest opens a backend in a fresh temp dir, closed at cleanup.
func openTest(t testing.TB, cfg Config) *Backend {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "state", "warden.db")
	}
	if cfg.ReapInterval == 0 {
		cfg.ReapInterval = 10 * time.Millisecond
	}
	b, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func TestConformance(t *testing.T) {
	storagetest.RunBackendConformance(t, func(t *testing.T, now func() time.Time) storage.Backend {
		return openTest(t, Config{Now: now})
	})
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir")
	path := filepath.Join(dir, "warden.db")
	b := openTest(t, Config{Path: path})
	if _, err := b.Put(t.Context(), storage.Item{Key: "/k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600, path + "-wal": 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"empty path", Config{}},
		{"question mark", Config{Path: filepath.Join(dir, "a?b.db")}},
		{"negative reap interval", Config{Path: filepath.Join(dir, "a.db"), ReapInterval: -1}},
		{"negative watch buffer", Config{Path: filepath.Join(dir, "a.db"), WatchBuffer: -1}},
		{"directory as file", Config{Path: dir}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Open(t.Context(), tc.cfg)
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "warden.db")
	ctx := t.Context()
	b, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := range 10 {
		it, err := b.Put(ctx, storage.Item{Key: fmt.Sprintf("/users/%02d", i), Value: fmt.Appendf(nil, "user %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		last = it.Revision
	}
	if err := b.Delete(ctx, "/users/03"); err != nil {
		t.Fatal(err)
	}
	if err := b.AuditLog().Emit(ctx, audit.Event{Event: audit.UserLogin, User: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Get(ctx, "/users/01"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: err = %v, want ErrClosed", err)
	}

	b2 := openTest(t, Config{Path: path})
	items, err := b2.List(ctx, "/users/", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 9 {
		t.Fatalf("after reopen List has %d items, want 9", len(items))
	}
	got, err := b2.Get(ctx, "/users/07")
	if err != nil || string(got.Value) != "user 7" {
		t.Fatalf("Get after reopen = %q, %v", got.Value, err)
	}
	// The revision counter continues: the delete consumed last+1.
	it, err := b2.Put(ctx, storage.Item{Key: "/users/10", Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if it.Revision != last+2 {
		t.Fatalf("first revision after reopen = %d, want %d", it.Revision, last+2)
	}
	evs, err := b2.AuditLog().Search(ctx, audit.Query{User: "alice"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("audit after reopen: %d events, %v", len(evs), err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "warden.db")
	b, err := Open(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.writer.ExecContext(t.Context(), `UPDATE schema_version SET version = ?`, schemaVersion+1); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if b, err := Open(t.Context(), Config{Path: path}); err == nil {
		b.Close()
		t.Fatal("Open accepted a database from a newer schema")
	}
}

func TestSlowWatcherIsClosed(t *testing.T) {
	b := openTest(t, Config{WatchBuffer: 4})
	ctx := t.Context()
	slow, err := b.Watch(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	fast, err := b.Watch(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	const writes = 10
	got := 0
	for i := range writes {
		if _, err := b.Put(ctx, storage.Item{Key: fmt.Sprintf("/k/%d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		<-fast // keep up
		got++
	}
	if got != writes {
		t.Fatalf("fast watcher got %d events", got)
	}
	n := 0
	for range slow {
		n++
	}
	if n != 4 {
		t.Fatalf("slow watcher received %d events before close, want 4 (its buffer)", n)
	}
	// Writers were never blocked and the fast watcher is still open.
	if _, err := b.Put(ctx, storage.Item{Key: "/k/last", Value: nil}); err != nil {
		t.Fatal(err)
	}
	if ev, ok := <-fast; !ok || ev.Item.Key != "/k/last" {
		t.Fatalf("fast watcher after slow one dropped: %+v, %v", ev, ok)
	}
}

func TestReapExplicit(t *testing.T) {
	clock := storagetest.NewClock(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	// A long interval so only the explicit call reaps.
	b := openTest(t, Config{Now: clock.Now, ReapInterval: time.Hour})
	ctx := t.Context()
	for i := range 2*reapBatch + 3 {
		if _, err := b.Put(ctx, storage.Item{Key: fmt.Sprintf("/tmp/%04d", i), Value: []byte("x"), Expires: clock.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Put(ctx, storage.Item{Key: "/tmp/keep", Value: []byte("x"), Expires: clock.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Reap(ctx); err != nil || n != 0 {
		t.Fatalf("Reap before expiry = %d, %v", n, err)
	}
	clock.Advance(2 * time.Minute)
	if n, err := b.Reap(ctx); err != nil || n != 2*reapBatch+3 {
		t.Fatalf("Reap = %d, %v; want %d", n, err, 2*reapBatch+3)
	}
	var rows int
	if err := b.reader.QueryRowContext(ctx, `SELECT count(*) FROM kv`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Fatalf("%d rows left after reap, want 1", rows)
	}
}

func BenchmarkPut(b *testing.B) {
	be := openTest(b, Config{})
	ctx := context.Background()
	val := make([]byte, 256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := be.Put(ctx, storage.Item{Key: fmt.Sprintf("/bench/%d", i%1000), Value: val}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkGet(b *testing.B) {
	be := openTest(b, Config{})
	ctx := context.Background()
	val := make([]byte, 256)
	const n = 1000
	for i := range n {
		if _, err := be.Put(ctx, storage.Item{Key: fmt.Sprintf("/bench/%d", i), Value: val}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := be.Get(ctx, fmt.Sprintf("/bench/%d", i%n)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func kvItem(w, i int) storage.Item {
	return storage.Item{Key: fmt.Sprintf("/w%d/%d", w, i), Value: []byte("v")}
}

func TestAuditConformance(t *testing.T) {
	storagetest.RunAuditConformance(t, func(t *testing.T, now func() time.Time) (storagetest.AuditLog, func() storagetest.AuditLog) {
		path := filepath.Join(t.TempDir(), "warden.db")
		b := openTest(t, Config{Path: path, Now: now})
		return b.AuditLog(), func() storagetest.AuditLog {
			return openTest(t, Config{Path: path, Now: now}).AuditLog()
		}
	}, storagetest.AuditOptions{})
}

func BenchmarkDriver(b *testing.B) {
	storagetest.RunBenchmarks(b, func(b *testing.B) (storage.Backend, storagetest.AuditLog, func() (storage.Backend, storagetest.AuditLog)) {
		path := filepath.Join(b.TempDir(), "warden.db")
		be := openTest(b, Config{Path: path, ReapInterval: time.Second})
		return be, be.AuditLog(), func() (storage.Backend, storagetest.AuditLog) {
			o := openTest(b, Config{Path: path, ReapInterval: time.Second})
			return o, o.AuditLog()
		}
	}, false)
}
