package sqlite

import (
	"crypto/ed25519"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/sqlite/sqlitetest"
	"github.com/warden-sh/warden/internal/storage/storagetest"
)

func testKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// signCheckpoint appends a checkpoint signed by key, at time at.
func signCheckpoint(t *testing.T, log *AuditLog, after audit.ChainPos, key ed25519.PrivateKey, at time.Time) (audit.Event, *audit.BadEvent) {
	t.Helper()
	ev, bad, err := log.AppendCheckpoint(t.Context(), after, func(seq int64, hash []byte) (audit.Event, error) {
		return audit.SignCheckpoint(key, seq, hash, at, 10*time.Minute), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ev, bad
}

// rechain recomputes every hash of the log from the first event, as the
// owner of the database can: the chain alone then verifies.
func rechain(t *testing.T, b *Backend) {
	t.Helper()
	ctx := t.Context()
	if err := sqlitetest.RechainAudit(ctx, b.writer); err != nil {
		t.Fatal(err)
	}
}

func TestAuditCheckpoints(t *testing.T) {
	b, log := chainFixture(t, 10)
	pub, priv := testKey(t)
	at := auditEpoch.Add(time.Hour)
	cp, bad := signCheckpoint(t, log, audit.ChainPos{}, priv, at)
	if bad != nil || cp.Seq != 11 || cp.Event != audit.Checkpoint {
		t.Fatalf("first checkpoint = %+v, %v", cp, bad)
	}
	res := mustVerify(t, log, pub)
	if !res.OK || res.Checkpoints != 1 || res.Signed.Seq != 10 || !res.SignaturesChecked || len(res.Warnings) != 0 {
		t.Fatalf("Verify = %+v", res)
	}
	// Nothing new: nothing appended.
	if again, bad := signCheckpoint(t, log, audit.ChainPos{Seq: cp.Seq, Hash: cp.Hash}, priv, at); again.Seq != 0 || bad != nil {
		t.Fatalf("checkpoint with nothing new = %+v, %v", again, bad)
	}
	for _, id := range []string{"e11", "e12"} {
		if err := log.Emit(t.Context(), audit.Event{Event: audit.Exec, ID: id, Time: at}); err != nil {
			t.Fatal(err)
		}
	}
	cp2, bad := signCheckpoint(t, log, audit.ChainPos{Seq: cp.Seq, Hash: cp.Hash}, priv, at.Add(10*time.Minute))
	if bad != nil || cp2.Seq != 14 {
		t.Fatalf("second checkpoint = %+v, %v", cp2, bad)
	}
	if res := mustVerify(t, log, pub); !res.OK || res.Checkpoints != 2 || res.Signed.Seq != 13 || res.Last.Seq != 14 {
		t.Fatalf("Verify = %+v", res)
	}
	last, ok, err := log.LastCheckpoint(t.Context())
	if err != nil || !ok || last.Seq != 14 || last.Hash != cp2.Hash {
		t.Fatalf("LastCheckpoint = %+v, %v, %v", last, ok, err)
	}
	if _, err := audit.CheckCheckpoint(last, last.Seq-1, mustHex(t, last.PrevHash), []ed25519.PublicKey{pub}); err != nil {
		t.Fatalf("CheckCheckpoint(last) = %v", err)
	}
	// Another key does not verify them.
	other, _ := testKey(t)
	if res := mustVerify(t, log, other); res.OK || !strings.Contains(res.FirstBad.Reason, "not among the public keys") {
		t.Fatalf("Verify with another key = %+v", res)
	}
	_ = b
}

// TestAuditCheckpointDetectsRewrite: the owner of the database rewrites an
// event before a checkpoint and recomputes the whole chain. The chain
// verifies; the checkpoint signature does not.
func TestAuditCheckpointDetectsRewrite(t *testing.T) {
	tests := []struct {
		name, sql, reason string
		seq               int64
	}{
		{"event rewritten", `UPDATE audit_events SET body = replace(body, 'cmd 5', 'cmd X') WHERE seq = 5`,
			"events before it were rewritten", 11},
		{"event deleted", `DELETE FROM audit_events WHERE seq = 5`, "", 0},
		{"checkpoint re-signed by another key", "", "not among the public keys", 11},
		{"checkpoint signature altered", `UPDATE audit_events SET body = replace(body, '"interval":"10m0s"', '"interval":"1h0m0s"') WHERE seq = 11`,
			"signature is invalid", 11},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, log := chainFixture(t, 10)
			pub, priv := testKey(t)
			cp, _ := signCheckpoint(t, log, audit.ChainPos{}, priv, auditEpoch.Add(time.Hour))
			if err := log.Emit(t.Context(), audit.Event{Event: audit.Exec, ID: "later", Time: auditEpoch.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			switch tc.name {
			case "event deleted":
				// Renumber as well, so that seqs have no gap.
				for _, q := range []string{`DELETE FROM audit_events WHERE seq = 5`,
					`UPDATE audit_events SET seq = seq - 1 WHERE seq > 5`,
					`UPDATE sqlite_sequence SET seq = seq - 1 WHERE name = 'audit_events'`} {
					if _, err := b.writer.ExecContext(t.Context(), q); err != nil {
						t.Fatal(err)
					}
				}
				tc.seq, tc.reason = 10, "events before it were rewritten"
			case "checkpoint re-signed by another key":
				// A forger signs a checkpoint of their own in its place.
				_, forger := testKey(t)
				forged := audit.SignCheckpoint(forger, 10, mustHex(t, cp.PrevHash), auditEpoch.Add(time.Hour), 10*time.Minute)
				forged.ID = cp.ID
				body, err := audit.Canonical(forged)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := b.writer.ExecContext(t.Context(), `UPDATE audit_events SET body = ? WHERE seq = 11`, body); err != nil {
					t.Fatal(err)
				}
			default:
				if _, err := b.writer.ExecContext(t.Context(), tc.sql); err != nil {
					t.Fatal(err)
				}
			}
			rechain(t, b)
			if res := mustVerify(t, log); !res.OK {
				t.Fatalf("the rewritten chain alone does not verify (%v): the test rewrites badly", res.FirstBad)
			}
			res := mustVerify(t, log, pub)
			if res.OK || res.FirstBad.Seq != tc.seq || !strings.Contains(res.FirstBad.Reason, tc.reason) {
				t.Fatalf("Verify with the key = %+v (%v), want seq %d: %q", res, res.FirstBad, tc.seq, tc.reason)
			}
			// Auth, about to sign the next checkpoint, notices too.
			if _, bad := signCheckpoint(t, log, audit.ChainPos{Seq: cp.Seq, Hash: cp.Hash}, priv, auditEpoch.Add(2*time.Hour)); bad == nil {
				t.Fatal("AppendCheckpoint after a rewrite found nothing wrong")
			}
		})
	}
}

func TestAuditCheckpointWarnings(t *testing.T) {
	clock := storagetest.NewClock(auditEpoch)
	b := openTest(t, Config{Now: clock.Now})
	log := b.AuditLog()
	pub, priv := testKey(t)
	emit := func(id string) {
		t.Helper()
		if err := log.Emit(t.Context(), audit.Event{Event: audit.Exec, ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	emit("a")
	clock.Advance(25 * time.Minute)
	emit("b")
	if res := mustVerify(t, log, pub); !res.OK || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "no signed checkpoint") {
		t.Fatalf("Verify without checkpoints = %+v", res)
	}
	signCheckpoint(t, log, audit.ChainPos{}, priv, clock.Now())
	emit("c")
	clock.Advance(15 * time.Minute)
	emit("d")
	// A node's event keeps the node's clock: hours behind says nothing.
	if err := log.Emit(t.Context(), audit.Event{Event: audit.Exec, ID: "node", Time: clock.Now().Add(-3 * time.Hour),
		Fields: map[string]any{"node_id": "n1"}}); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, log, pub); !res.OK || len(res.Warnings) != 0 {
		t.Fatalf("Verify with a tail younger than two intervals = %+v", res)
	}
	clock.Advance(15 * time.Minute)
	emit("e")
	res := mustVerify(t, log, pub)
	if !res.OK || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "the last 4 events") {
		t.Fatalf("Verify with an old unsigned tail = %+v", res)
	}
	// Without keys, signatures are not checked and nothing is said.
	if res := mustVerify(t, log); !res.OK || res.SignaturesChecked || res.Checkpoints != 0 || len(res.Warnings) != 0 {
		t.Fatalf("Verify without keys = %+v", res)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVerifyFile checks a database file read-only, as warden audit verify
// --db does, while the store has it open.
func TestVerifyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "warden.db")
	b := openTest(t, Config{Path: path})
	log := b.AuditLog()
	pub, priv := testKey(t)
	if err := log.Emit(t.Context(), audit.Event{Event: audit.Exec, ID: "a"}); err != nil {
		t.Fatal(err)
	}
	signCheckpoint(t, log, audit.ChainPos{}, priv, auditEpoch)
	res, err := VerifyFile(t.Context(), path, pub)
	if err != nil || !res.OK || res.Checkpoints != 1 || res.Checked != 2 {
		t.Fatalf("VerifyFile = %+v, %v", res, err)
	}
	if _, err := b.writer.ExecContext(t.Context(), `UPDATE audit_events SET body = replace(body, '"success":false', '"success":true') WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	rechain(t, b)
	if res, err := VerifyFile(t.Context(), path, pub); err != nil || res.OK || res.FirstBad.Seq != 2 {
		t.Fatalf("VerifyFile after a rewrite = %+v, %v", res, err)
	}
	if _, err := VerifyFile(t.Context(), filepath.Join(t.TempDir(), "missing.db"), pub); err == nil {
		t.Fatal("VerifyFile of a missing file succeeded")
	}
}
