//go:build integration

package postgres

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/storage/postgres/pgtest"
	"github.com/warden-sh/warden/internal/storage/storagetest"
)

func TestMain(m *testing.M) {
	os.Exit(patience.LeakCheck(m.Run()))
}

// openTest opens a backend on db (a fresh database when nil), closed at
// cleanup.
func openTest(t testing.TB, db *pgtest.DB, cfg Config) *Backend {
	t.Helper()
	if db == nil {
		db = pgtest.New(t)
	}
	cfg.URL = db.URL
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
		return openTest(t, nil, Config{Now: now})
	})
}

func TestAuditConformance(t *testing.T) {
	storagetest.RunAuditConformance(t, func(t *testing.T, now func() time.Time) (storagetest.AuditLog, func() storagetest.AuditLog) {
		db := pgtest.New(t)
		b := openTest(t, db, Config{Now: now})
		return b.AuditLog(), func() storagetest.AuditLog {
			return openTest(t, db, Config{Now: now}).AuditLog()
		}
	}, storagetest.AuditOptions{CrossInstanceSubscribe: true})
}

// interruptible is a Backend whose test can cut its connections.
type interruptible struct {
	*Backend
	db *pgtest.DB
}

func (b interruptible) Interrupt(t testing.TB) {
	if n := b.db.TerminateConnections(t); n == 0 {
		t.Fatal("no connection to terminate")
	}
}

func TestWatchResumption(t *testing.T) {
	storagetest.RunWatchResumption(t, func(t *testing.T, now func() time.Time) storagetest.Interruptible {
		db := pgtest.New(t)
		return interruptible{openTest(t, db, Config{Now: now}), db}
	})
}

func BenchmarkDriver(b *testing.B) {
	storagetest.RunBenchmarks(b, func(b *testing.B) (storage.Backend, storagetest.AuditLog, func() (storage.Backend, storagetest.AuditLog)) {
		db := pgtest.New(b)
		be := openTest(b, db, Config{ReapInterval: time.Second})
		return be, be.AuditLog(), func() (storage.Backend, storagetest.AuditLog) {
			o := openTest(b, db, Config{ReapInterval: time.Second})
			return o, o.AuditLog()
		}
	}, true)
}

// A refused password is not in the error (which auth logs), and neither
// is a connection string that does not parse.
func TestErrorsDoNotShowThePassword(t *testing.T) {
	db := pgtest.New(t)
	u := "postgres://" + db.Config.User + "@" + db.Config.Host + ":" + fmt.Sprint(db.Config.Port) + "/" + db.Name + "?sslmode=disable"
	_, err := Open(t.Context(), Config{URL: u, Password: "wrong-s3cret-pw"})
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if strings.Contains(err.Error(), "wrong-s3cret-pw") || !strings.Contains(err.Error(), db.Config.User+"@") {
		t.Fatalf("error %q: want user@host, never the password", err)
	}
	_, err = Open(t.Context(), Config{URL: "postgres://u:s3cret-in-url@h:notaport/db"})
	if err == nil || strings.Contains(err.Error(), "s3cret-in-url") {
		t.Fatalf("error %v shows the password", err)
	}
	// The right password in Config.Password, none in the URL, works.
	b, err := Open(t.Context(), Config{URL: u, Password: db.Config.Password})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// BenchmarkAuditCommitPath compares, in one run, the pipelined audit
// append (two round trips per group commit) with the transaction it
// replaced (five), under 16 concurrent appenders and under batched
// ingest, one instance and then two on one chain.
func BenchmarkAuditCommitPath(b *testing.B) {
	for _, path := range []string{"OneTx", "Pipelined"} {
		b.Run(path, func(b *testing.B) {
			storagetest.RunAuditBenchmarks(b, func(b *testing.B) (storage.Backend, storagetest.AuditLog, func() (storage.Backend, storagetest.AuditLog)) {
				db := pgtest.New(b)
				open := func() *Backend {
					be := openTest(b, db, Config{ReapInterval: time.Second})
					be.auditOneTx = path == "OneTx"
					return be
				}
				be := open()
				return be, be.AuditLog(), func() (storage.Backend, storagetest.AuditLog) {
					o := open()
					return o, o.AuditLog()
				}
			})
		})
	}
}
