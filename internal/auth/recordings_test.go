package auth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
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
