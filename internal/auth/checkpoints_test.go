package auth_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/storage/sqlite/sqlitetest"
)

func TestAuditCheckpointsSignedByAuth(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *auth.Config) { c.AuditKey = priv })
	ctx := context.Background()
	f.signup("dev", []string{"access"}, []string{"dev"})
	auth.Checkpoint(f.a, ctx)
	res, err := f.a.VerifyAudit(ctx, auth.AdminCaller())
	if err != nil || !res.OK || res.Checkpoints != 1 || !res.SignaturesChecked || res.Signed.Seq != res.Last.Seq-1 {
		t.Fatalf("VerifyAudit = %+v, %v", res, err)
	}
	pemKey, id, err := f.a.ExportAuditKey(ctx, auth.AdminCaller())
	if err != nil || id != audit.KeyID(pub) {
		t.Fatalf("ExportAuditKey = %s, %v", id, err)
	}
	if keys, err := audit.ParsePublicKeys(pemKey); err != nil || !keys[0].Equal(pub) {
		t.Fatalf("exported key %q: %v", pemKey, err)
	}
	// A user may not export it.
	if _, _, err := f.a.ExportAuditKey(ctx, auth.Caller{Kind: auth.KindUser, User: "dev", Roles: []string{"access"}}); err == nil {
		t.Fatal("a user exported the audit key")
	}

	// The owner of the database rewrites the first event and recomputes the
	// chain. The next checkpoint records the break; verify names it.
	rewriteFirstEvent(t, f)
	auth.Checkpoint(f.a, ctx)
	broken, err := f.b.AuditLog().Search(ctx, audit.Query{Type: audit.ChainBroken})
	if err != nil || len(broken) != 1 || !strings.Contains(broken[0].Error, "rewritten") {
		t.Fatalf("chain_broken events = %+v, %v", broken, err)
	}
	res, err = f.a.VerifyAudit(ctx, auth.AdminCaller())
	if err != nil || res.OK || !strings.Contains(res.FirstBad.Reason, "events before it were rewritten") {
		t.Fatalf("VerifyAudit after the rewrite = %+v (%v), %v", res, res.FirstBad, err)
	}
}

// rewriteFirstEvent changes the first audit event's body and recomputes
// every hash after it, over a connection of its own, as the owner of the
// database file can.
func rewriteFirstEvent(t *testing.T, f *fixture) {
	t.Helper()
	db, err := sql.Open("sqlite", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `UPDATE audit_events SET body = replace(body, '"success":true', '"success":false') WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	if err := sqlitetest.RechainAudit(ctx, db); err != nil {
		t.Fatal(err)
	}
}
