package recording

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"

	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/asciicast"
	"github.com/warden-sh/warden/internal/patience"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runCrashChild())
	}
	// The low-priority recording threads live as long as the process.
	os.Exit(patience.LeakCheck(m.Run(), goleak.IgnoreAnyFunction(PoolFunction)))
}

// directUploader is the node-to-auth transport without the network: it
// calls Store directly, and can be switched off or made to lose acks.
type directUploader struct {
	store  *Store
	nodeID string

	down atomic.Bool
	// hang, when set (before the spool starts), holds every call until it
	// is closed: auth that does not answer at all.
	hang      chan struct{}
	loseAckAt atomic.Int64 // lose the ack of the upload at this call number (1-based); 0: never
	calls     atomic.Int64
	okCalls   atomic.Int64
	offsetErr atomic.Int64
	// before runs before each Upload reaches the store (test hooks).
	before func(call int64, meta Meta, offset int64)
}

var errUnreachable = errors.New("auth unreachable")

func (d *directUploader) Upload(ctx context.Context, meta Meta, offset int64, data []byte) error {
	n := d.calls.Add(1)
	if err := d.wait(ctx); err != nil {
		return err
	}
	if d.down.Load() {
		return errUnreachable
	}
	if d.before != nil {
		d.before(n, meta, offset)
	}
	_, err := d.store.Append(meta, d.nodeID, offset, data)
	var oe *OffsetError
	if errors.As(err, &oe) {
		d.offsetErr.Add(1)
	}
	if err != nil {
		return err
	}
	d.okCalls.Add(1)
	if n == d.loseAckAt.Load() {
		return errors.New("connection reset before the reply")
	}
	return nil
}

func (d *directUploader) Complete(ctx context.Context, meta Meta, length int64, sum string, interrupted bool) error {
	if err := d.wait(ctx); err != nil {
		return err
	}
	if d.down.Load() {
		return errUnreachable
	}
	return d.store.Complete(meta.SessionID, d.nodeID, length, sum, interrupted)
}

// wait holds a call while hang is open.
func (d *directUploader) wait(ctx context.Context) error {
	if d.hang == nil {
		return nil
	}
	select {
	case <-d.hang:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newSpool(t testing.TB, dir string, up Uploader, mod ...func(*SpoolConfig)) *Spool {
	t.Helper()
	cfg := SpoolConfig{Dir: dir, Uploader: up, FlushInterval: 10 * time.Millisecond, ChunkSize: 4096, MaxBackoff: 50 * time.Millisecond}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := OpenSpool(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testMeta(id string) Meta {
	return Meta{SessionID: id, User: "alice", Login: "root", Node: "web1", NodeID: "node-1",
		RemoteAddr: "127.0.0.1:5555", Start: time.Unix(1_700_000_000, 0).UTC()}
}

func testHeader() asciicast.Header {
	return asciicast.Header{Width: 80, Height: 24, Env: map[string]string{"TERM": "xterm", "SHELL": "/bin/bash"}}
}

func waitPending(t testing.TB, s *Spool, want int) {
	t.Helper()
	deadline := patience.Deadline(t)
	for s.Pending() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Pending() = %d, want %d", s.Pending(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stored returns a recording's bytes from the store.
func stored(t testing.TB, st *Store, id string) ([]byte, *Info) {
	t.Helper()
	rc, info, err := st.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b, info
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// events reads a recording and returns its output, input and resizes.
func events(t testing.TB, b []byte) (out, in string, resizes []string) {
	t.Helper()
	r, err := asciicast.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("read recording: %v", err)
	}
	var o, i strings.Builder
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read recording: %v", err)
		}
		switch ev.Type {
		case asciicast.TypeOutput:
			o.WriteString(ev.Data)
		case asciicast.TypeInput:
			i.WriteString(ev.Data)
		case asciicast.TypeResize:
			resizes = append(resizes, ev.Data)
		}
	}
	return o.String(), i.String(), resizes
}

// dirNames lists a directory.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// uploaded returns the acknowledged offset of a pending recording (tests).
func (s *Spool) uploaded(id string) int64 {
	s.mu.Lock()
	u := s.uploads[id]
	s.mu.Unlock()
	if u == nil {
		return -1
	}
	return u.snapshot().uploaded
}
