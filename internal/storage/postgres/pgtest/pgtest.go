// Package pgtest gives integration tests a fresh PostgreSQL database each,
// on the server scripts/postgres-peer.sh starts (.ci/run runs it). A test
// that cannot reach the server fails: it never skips.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultAdminURL is the server and the role scripts/postgres-peer.sh
// makes (a test-only password on a test-only role that may create
// databases). WARDEN_TEST_POSTGRES overrides it.
const DefaultAdminURL = "postgres://warden_test:warden_test@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURL is the URL tests use to create and drop their databases.
func AdminURL() string {
	if u := os.Getenv("WARDEN_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultAdminURL
}

// DB is a fresh database for one test.
type DB struct {
	// Name is the database's name.
	Name string
	// URL connects to it as the test role, password included (tests only).
	URL string
	// Config is URL parsed, for tests that need host, port, user.
	Config *pgx.ConnConfig
}

// New creates an empty UTF-8 database and drops it when the test ends
// (cleanups run last in, first out: register this before opening anything
// on it). It fails the test, not skips it, when the server is unreachable.
func New(tb testing.TB) *DB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Fatalf("pgtest: PostgreSQL unreachable at %s (run scripts/postgres-peer.sh): %v", redact(AdminURL()), err)
	}
	defer admin.Close(context.Background())
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		tb.Fatal(err)
	}
	name := "warden_test_" + hex.EncodeToString(rnd[:])
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name+` ENCODING 'UTF8' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'`); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() { Drop(tb, name) })
	cfg, err := pgx.ParseConfig(AdminURL())
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Database = name
	u := fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Password, cfg.Host, cfg.Port, name)
	return &DB{Name: name, URL: u, Config: cfg}
}

// Drop drops the database name, ending its connections first.
func Drop(tb testing.TB, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Errorf("pgtest: drop %s: %v", name, err)
		return
	}
	defer admin.Close(context.Background())
	// FORCE ends the test's own sessions; it may not end an autovacuum
	// worker (the superuser's: SQLSTATE 42501), which a plain DROP
	// cancels, so both are tried until one works.
	for attempt := 0; ; attempt++ {
		stmt := `DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`
		if attempt%2 == 1 {
			stmt = `DROP DATABASE IF EXISTS ` + name
		}
		_, err := admin.Exec(ctx, stmt)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			tb.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TerminateConnections ends every client connection to the database, as a
// server restart or a network cut does for its clients, and returns how
// many it ended. Not the server's own workers on it (an autovacuum worker
// counts as a superuser's process, which this non-superuser may not end).
func (d *DB) TerminateConnections(tb testing.TB) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	defer admin.Close(context.Background())
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'`, d.Name).Scan(&n); err != nil {
		tb.Fatalf("pgtest: terminate connections: %v", err)
	}
	return n
}

// redact hides the password of a URL for messages.
func redact(u string) string {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}
