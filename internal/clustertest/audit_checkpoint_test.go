//go:build integration

package clustertest

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/storage/sqlite/sqlitetest"
	"github.com/warden-sh/warden/internal/testkit"
)

// TestAuditSignedCheckpoints: auth signs checkpoints; the exported public
// key verifies the log here (from the API), a copy of the database and the
// audit sink's file; after the owner of the database rewrites an event and
// recomputes the whole chain, the checkpoint signatures expose it.
func TestAuditSignedCheckpoints(t *testing.T) {
	dir := t.TempDir()
	sinkFile := filepath.Join(t.TempDir(), "siem.jsonl")
	c := New(t, Options{NoNode: true, DataDir: dir, Auth: service.AuthConfig{
		AuditSink: service.AuditSinkConfig{File: sinkFile}, CheckpointInterval: time.Millisecond}})
	admin := t.TempDir()
	for _, name := range []string{"u1", "u2"} {
		if r := c.Warden(admin, nil, "users", "add", name, "--roles", "access", "--logins", "x"+name); r.Code != 0 {
			t.Fatalf("users add: %s", r)
		}
	}
	keyFile := filepath.Join(t.TempDir(), "audit.pub")
	if r := c.Warden(admin, nil, "audit", "export-key", "-o", keyFile); r.Code != 0 || !strings.Contains(r.Stderr, "sha256:") {
		t.Fatalf("audit export-key: %s", r)
	}
	// Wait for a checkpoint that signs the second user's creation (the
	// sweeper signs one every tick here).
	testkit.WaitFor(t, "a checkpoint after user.create u2", func() bool {
		evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Limit: audit.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		created := false
		for _, ev := range evs {
			created = created || (ev.Event == "user.create" && ev.Fields["target_user"] == "u2")
			if created && ev.Event == audit.Checkpoint {
				return true
			}
		}
		return false
	})
	for _, args := range [][]string{
		{"audit", "verify"},
		{"audit", "verify", "--pubkey", keyFile, "--no-recordings"},
		{"audit", "verify", "--pubkey", keyFile, "--db", filepath.Join(dir, "warden.db")},
	} {
		if r := c.Warden(admin, nil, args...); r.Code != 0 || !strings.Contains(r.Stdout, "intact") || !strings.Contains(r.Stdout, "signed: events up to seq") {
			t.Fatalf("%v: %s", args, r)
		}
	}
	testkit.WaitFor(t, "a checkpoint in the sink file", func() bool {
		b, _ := os.ReadFile(sinkFile)
		return strings.Contains(string(b), audit.Checkpoint)
	})
	if r := c.Warden(admin, nil, "audit", "verify", "--pubkey", keyFile, "--file", sinkFile); r.Code != 0 || !strings.Contains(r.Stdout, "signed: events up to seq") {
		t.Fatalf("verify of the sink file: %s", r)
	}

	// Stop auth (it signs a last checkpoint) and rewrite the database as
	// its owner can: u1 becomes u9, every hash recomputed.
	c.Proc.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "warden.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	res, err := db.ExecContext(ctx, `UPDATE audit_events SET body = replace(body, '"target_user":"u1"', '"target_user":"u9"')
		WHERE event = 'user.create'`)
	if n, _ := res.RowsAffected(); err != nil || n == 0 {
		t.Fatalf("rewrite: %d rows, %v", n, err)
	}
	if err := sqlitetest.RechainAudit(ctx, db); err != nil {
		t.Fatal(err)
	}
	r := c.Warden(admin, nil, "audit", "verify", "--pubkey", keyFile, "--db", filepath.Join(dir, "warden.db"))
	if r.Code != 2 || !strings.Contains(r.Stdout, "AUDIT LOG TAMPERED") || !strings.Contains(r.Stdout, "events before it were rewritten") {
		t.Fatalf("verify of the rewritten database: %s", r)
	}
	// The copy in the sink is untouched and still verifies.
	if r := c.Warden(admin, nil, "audit", "verify", "--pubkey", keyFile, "--file", sinkFile); r.Code != 0 {
		t.Fatalf("verify of the sink file after the rewrite: %s", r)
	}
}
