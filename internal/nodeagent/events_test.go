package nodeagent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
)

// fakeSink records delivered batches, or fails while down is set.
type fakeSink struct {
	mu    sync.Mutex
	down  bool
	got   []audit.Event
	tries int
}

func (s *fakeSink) EmitEvents(_ context.Context, evs []audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	if s.down {
		return errors.New("auth unreachable")
	}
	s.got = append(s.got, evs...)
	return nil
}

func (s *fakeSink) events() []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]audit.Event(nil), s.got...)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestEventJournalKeepsUndeliveredEvents: events emitted while auth is
// unreachable survive the agent stopping (or dying: they are written at
// once) and are delivered, in order and with their ids, by the next run;
// the journal is emptied once they are delivered.
func TestEventJournalKeepsUndeliveredEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.journal")
	down := &fakeSink{down: true}
	f1, err := newEventForwarder(down, quiet, path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f1.run(ctx); close(done) }()
	var want []string
	for _, name := range []string{"session.start", "exec", "session.end"} {
		if err := f1.Emit(ctx, audit.Event{Event: name, User: "alice", Success: true}); err != nil {
			t.Fatal(err)
		}
	}
	f1.mu.Lock()
	for _, ev := range f1.queue {
		want = append(want, ev.ID)
	}
	f1.mu.Unlock()
	// A failed delivery attempt.
	for deadline := patience.Deadline(t); ; time.Sleep(10 * time.Millisecond) {
		down.mu.Lock()
		tries := down.tries
		down.mu.Unlock()
		if tries > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no delivery attempt")
		}
	}
	cancel()
	<-done
	// No close: as if the process had been killed.

	up := &fakeSink{}
	f2, err := newEventForwarder(up, quiet, path)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.close()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go f2.run(ctx2)
	deadline := patience.Deadline(t)
	for len(up.events()) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of %d events", len(up.events()), len(want))
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := up.events()
	for i, id := range want {
		if got[i].ID != id || got[i].User != "alice" {
			t.Fatalf("event %d: %+v, want id %s", i, got[i], id)
		}
	}
	waitJournalSize(t, path, 0)
	// New events are journaled and delivered too.
	if err := f2.Emit(ctx2, audit.Event{Event: "exec", Success: true}); err != nil {
		t.Fatal(err)
	}
	for len(up.events()) < len(want)+1 {
		if time.Now().After(deadline) {
			t.Fatal("new event not delivered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitJournalSize(t, path, 0)
}

func waitJournalSize(t *testing.T, path string, want int64) {
	t.Helper()
	deadline := patience.Deadline(t)
	for {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal is %d bytes, want %d", st.Size(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventJournalTornWrite: a last line cut short by a crash is skipped;
// more damage than that is refused rather than silently dropped.
func TestEventJournalTornWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.journal")
	good := `{"event":"exec","id":"a1","time":"2026-11-22T00:00:00Z","success":true}` + "\n" +
		`{"event":"exec","id":"a2","time":"2026-11-22T00:00:01Z","success":true}` + "\n"
	if err := os.WriteFile(path, []byte(good+`{"event":"ex`), 0o600); err != nil {
		t.Fatal(err)
	}
	j, pending, err := openEventJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	j.close()
	if len(pending) != 2 || pending[0].ID != "a1" || pending[1].ID != "a2" {
		t.Fatalf("pending %+v", pending)
	}
	bad := filepath.Join(dir, "bad.journal")
	if err := os.WriteFile(bad, []byte("junk\n"+good+"junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openEventJournal(bad); err == nil {
		t.Fatal("a journal with two unreadable lines was accepted")
	}
}

// TestEventJournalRewrite: a journal holding mostly delivered events is
// rewritten with just the queued ones.
func TestEventJournalRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.journal")
	j, _, err := openEventJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := appendEvent(j, audit.Event{Event: "exec", ID: "old"}); err != nil {
			t.Fatal(err)
		}
	}
	keep := []audit.Event{{Event: "exec", ID: "k1"}, {Event: "exec", ID: "k2"}}
	if err := j.rewrite(keep); err != nil {
		t.Fatal(err)
	}
	if err := appendEvent(j, audit.Event{Event: "exec", ID: "k3"}); err != nil {
		t.Fatal(err)
	}
	j.close()
	_, pending, err := openEventJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 3 || pending[0].ID != "k1" || pending[2].ID != "k3" {
		t.Fatalf("pending %+v", pending)
	}
}

func appendEvent(j *eventJournal, ev audit.Event) error {
	line, err := journalLine(ev)
	if err != nil {
		return err
	}
	return j.appendLine(line)
}

// TestRecordingWaitsForSessionStart: a recording's first chunk waits until
// auth has the session's session.start (auth refuses recordings of sessions
// it has no record of); one resumed after a restart waits for the events
// queued before it (the journal's).
func TestRecordingWaitsForSessionStart(t *testing.T) {
	sink := &fakeSink{}
	f, err := newEventForwarder(sink, quiet, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	waiting := func(id string) chan error {
		done := make(chan error, 1)
		go func() { done <- f.waitStart(ctx, id) }()
		return done
	}
	// pending checks that a wait has not returned (a slow machine can only
	// miss an early return, never report a false one).
	pending := func(done chan error) {
		select {
		case err := <-done:
			t.Fatalf("waitStart returned early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	f.expectStart("s1")
	done := waiting("s1")
	pending(done)
	// An unrelated event delivered does not release it.
	_ = f.Emit(ctx, audit.Event{Event: audit.Exec, SessionID: "s1"})
	if err := f.send(ctx); err != nil {
		t.Fatal(err)
	}
	pending(done)
	_ = f.Emit(ctx, audit.Event{Event: audit.SessionStart, SessionID: "s1", Success: true})
	if err := f.send(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Delivered already: no wait.
	if err := f.waitStart(ctx, "s1"); err != nil {
		t.Fatal(err)
	}

	// Not seen starting (resumed): wait for what is queued.
	_ = f.Emit(ctx, audit.Event{Event: audit.SessionStart, SessionID: "s2", Success: true})
	done = waiting("s2")
	pending(done)
	if err := f.send(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A cancelled wait returns its context's error.
	f.expectStart("s3")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.waitStart(cctx, "s3"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waitStart = %v", err)
	}
}
