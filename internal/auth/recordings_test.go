package auth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/recording"
)

// TestReadDuringCompletion: a reader that finds a recording marked
// complete while its completion is being audited waits for the audit
// event and reads the recording checked, instead of reporting it altered
// (the two are separate writes).
func TestReadDuringCompletion(t *testing.T) {
	st, err := recording.OpenStore(filepath.Join(t.TempDir(), "rec"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *auth.Config) { c.Recordings = st })
	ctx := context.Background()
	node := f.joinNode("web1")
	const id = "0123456789abcdef0123456789abcdef"
	if err := f.a.EmitEvents(ctx, node, []audit.Event{{ID: "e1", Event: audit.SessionStart, SessionID: id, User: "dev",
		Login: "dev", Success: true}}); err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"version":2,"width":80,"height":24}` + "\n" + `[0.5,"o","hello"]` + "\n")
	if _, err := f.a.AppendRecording(ctx, node, recording.Meta{SessionID: id, User: "dev", Login: "dev"}, 0, data); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		err error
	}
	read := func() result {
		rs, err := f.a.OpenRecording(ctx, auth.AdminCaller(), id)
		if err != nil {
			return result{err: err}
		}
		defer rs.Close()
		b, err := io.ReadAll(rs)
		if err == nil && !rs.Checked {
			t.Error("the recording was read unchecked")
		}
		return result{n: len(b), err: err}
	}
	done := make(chan result, 1)
	auth.OnMarkedComplete(f.a, func(string) {
		go func() { done <- read() }()
		// The reader must wait for the completion to be audited. (On a
		// busy machine it may not get this far in time; then this check
		// passes without having tested anything, never the reverse.)
		select {
		case r := <-done:
			t.Errorf("a read during the completion returned before it was audited: %d bytes, %v", r.n, r.err)
			done <- r
		case <-time.After(200 * time.Millisecond):
		}
	})
	sum := sha256.Sum256(data)
	if err := f.a.CompleteRecording(ctx, node, id, int64(len(data)), hex.EncodeToString(sum[:]), false); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.n != len(data) {
		t.Fatalf("read during the completion: %d bytes, %v", r.n, r.err)
	}
}

// TestRangedReadsCheckBlocks: the web player's ranged reads check the
// blocks they touch against the block hashes whose root the audit log
// recorded: a byte changed in the stored recording fails the reads of its
// block (and is audited) while the other blocks still read; a changed
// block list refuses the recording.
func TestRangedReadsCheckBlocks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	st, err := recording.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *auth.Config) { c.Recordings = st })
	ctx := context.Background()
	node := f.joinNode("web1")
	const id = "0123456789abcdef0123456789abcdef"
	if err := f.a.EmitEvents(ctx, node, []audit.Event{{ID: "e1", Event: audit.SessionStart, SessionID: id, User: "dev",
		Login: "dev", Success: true}}); err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"version":2,"width":80,"height":24}` + "\n")
	for len(data) < 3*recording.BlockSize {
		data = append(data, `[0.5,"o","some output of the session"]`+"\n"...)
	}
	for off := 0; off < len(data); off += recording.MaxChunk {
		chunk := data[off:min(off+recording.MaxChunk, len(data))]
		if _, err := f.a.AppendRecording(ctx, node, recording.Meta{SessionID: id, User: "dev", Login: "dev"}, int64(off), chunk); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(data)
	if err := f.a.CompleteRecording(ctx, node, id, int64(len(data)), hex.EncodeToString(sum[:]), false); err != nil {
		t.Fatal(err)
	}
	readAt := func(off int64) error {
		t.Helper()
		rf, err := f.a.OpenRecordingAt(ctx, auth.AdminCaller(), id)
		if err != nil {
			return err
		}
		defer rf.Close()
		p := make([]byte, 1000)
		n, err := rf.ReadAt(p, off)
		if err == nil && string(p[:n]) != string(data[off:off+int64(n)]) {
			t.Fatalf("read at %d returned other bytes", off)
		}
		return err
	}
	for _, off := range []int64{0, recording.BlockSize + 5} {
		if err := readAt(off); err != nil {
			t.Fatalf("intact recording, read at %d: %v", off, err)
		}
	}
	altered := func() int {
		t.Helper()
		evs, err := f.a.SearchAudit(ctx, auth.AdminCaller(), audit.Query{Type: audit.RecordingAltered, SessionID: id})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}

	cast := filepath.Join(dir, id+".cast")
	b, err := os.ReadFile(cast)
	if err != nil {
		t.Fatal(err)
	}
	b[recording.BlockSize+100] ^= 0x20
	if err := os.WriteFile(cast, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var ae *recording.AlteredError
	if err := readAt(recording.BlockSize + 5); !errors.As(err, &ae) {
		t.Fatalf("read of the edited block: %v", err)
	}
	if err := readAt(2*recording.BlockSize + 5); err != nil {
		t.Fatalf("read of an intact block of the edited recording: %v", err)
	}
	if n := altered(); n != 1 {
		t.Fatalf("%d recording.altered events, want 1", n)
	}
	// Edit the block list to match the edited bytes: its root is not the
	// audit log's.
	b[recording.BlockSize+100] ^= 0x20
	if err := os.WriteFile(cast, b, 0o600); err != nil {
		t.Fatal(err)
	}
	blocks := filepath.Join(dir, id+".blocks")
	list, err := os.ReadFile(blocks)
	if err != nil {
		t.Fatal(err)
	}
	list[40] ^= 1
	if err := os.WriteFile(blocks, list, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := readAt(0); !errors.As(err, &ae) {
		t.Fatalf("recording with an edited block list: %v", err)
	}
	if err := os.Remove(blocks); err != nil {
		t.Fatal(err)
	}
	if err := readAt(0); !errors.As(err, &ae) {
		t.Fatalf("recording with its block list removed: %v", err)
	}
	if n := altered(); n != 3 {
		t.Fatalf("%d recording.altered events, want 3", n)
	}
}
