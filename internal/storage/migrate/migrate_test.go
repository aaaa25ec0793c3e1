//go:build integration

package migrate

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/storage/postgres"
	"github.com/warden-sh/warden/internal/storage/postgres/pgtest"
	"github.com/warden-sh/warden/internal/storage/sqlite"
)

// A log with a retention checkpoint and signed checkpoints, and state
// with a TTL, arrive whole: the chain verifies with the key on the target
// from the same seqs and hashes, appends continue it, and a second run
// is refused unless told to replace.
func TestRunKeepsChainCheckpointsAndTTL(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	src, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "warden.db"), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	db := pgtest.New(t)
	dst, err := postgres.Open(ctx, postgres.Config{URL: db.URL, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	log := src.AuditLog()
	for i := range 30 {
		if err := log.Emit(ctx, audit.Event{Event: audit.Exec, Time: now.Add(time.Duration(i) * time.Minute), User: fmt.Sprint("u", i%3)}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			if _, bad, err := log.AppendCheckpoint(ctx, audit.ChainPos{}, func(seq int64, hash []byte) (audit.Event, error) {
				return audit.SignCheckpoint(priv, seq, hash, now, time.Minute), nil
			}); err != nil || bad != nil {
				t.Fatal(err, bad)
			}
		}
	}
	if n, err := log.DeleteBefore(ctx, now.Add(5*time.Minute)); err != nil || n == 0 {
		t.Fatalf("DeleteBefore = %d, %v", n, err)
	}
	if _, err := src.Put(ctx, storage.Item{Key: "/users/a", Value: []byte("alice")}); err != nil {
		t.Fatal(err)
	}
	lease := now.Add(time.Hour)
	if _, err := src.Put(ctx, storage.Item{Key: "/leases/x", Value: []byte("x"), Expires: lease}); err != nil {
		t.Fatal(err)
	}
	want, err := log.Verify(ctx, pub)
	if err != nil || !want.OK {
		t.Fatalf("source Verify = %+v, %v", want, err)
	}

	rep, err := Run(ctx, src, dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Items != 2 || rep.RetentionCheckpoints != 1 || rep.LastSeq != want.Last.Seq || !rep.TargetChain.OK {
		t.Fatalf("report = %+v", rep)
	}
	got, err := dst.AuditLog().Verify(ctx, pub)
	if err != nil || !got.OK || got.Last != want.Last || got.Checkpoints != want.Checkpoints || got.Checked != want.Checked {
		t.Fatalf("target Verify = %+v, %v; source %+v", got, err, want)
	}
	it, err := dst.Get(ctx, "/leases/x")
	if err != nil || !it.Expires.Equal(lease) || string(it.Value) != "x" {
		t.Fatalf("lease = %+v, %v", it, err)
	}
	// Appending on the target continues the chain.
	if err := dst.AuditLog().Emit(ctx, audit.Event{Event: audit.Exec}); err != nil {
		t.Fatal(err)
	}
	if res, err := dst.AuditLog().Verify(ctx, pub); err != nil || !res.OK || res.Last.Seq != want.Last.Seq+1 {
		t.Fatalf("Verify after an append = %+v, %v", res, err)
	}
	if _, err := Run(ctx, src, dst, Options{}); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("second Run = %v, want ErrTargetNotEmpty", err)
	}
	if _, err := Run(ctx, src, dst, Options{Replace: true}); err != nil {
		t.Fatalf("Run with Replace = %v", err)
	}
	if res, err := dst.AuditLog().Verify(ctx, pub); err != nil || !res.OK || res.Last != want.Last {
		t.Fatalf("Verify after replace = %+v, %v", res, err)
	}
}
