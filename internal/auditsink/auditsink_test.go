package auditsink

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/storage/sqlite"
	"github.com/warden-sh/warden/internal/testkit"
)

func TestMain(m *testing.M) {
	os.Exit(patience.LeakCheck(m.Run()))
}

// openLog opens a real audit log (the sink's source in production).
func openLog(t *testing.T) *sqlite.AuditLog {
	t.Helper()
	b, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "warden.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.AuditLog()
}

func emitN(t *testing.T, log *sqlite.AuditLog, from, n int) {
	t.Helper()
	evs := make([]audit.Event, n)
	for i := range evs {
		evs[i] = audit.Event{Event: audit.Exec, ID: fmt.Sprintf("ev%d", from+i), User: "alice",
			Fields: map[string]any{"command": fmt.Sprintf("cmd <%d> & more", from+i)}}
	}
	if err := log.EmitBatch(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
}

// receiver is a webhook endpoint that fails according to plan before
// accepting, and records what it accepted.
type receiver struct {
	t    *testing.T
	mu   sync.Mutex
	plan []int // status per request while non-empty; 0 = drop the connection
	got  []audit.Event
	hits []time.Time
	keys []string
	srv  *httptest.Server
}

func newReceiver(t *testing.T, plan ...int) *receiver {
	r := &receiver{t: t, plan: plan}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hits = append(r.hits, time.Now())
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" || req.Header.Get("X-Token") != "secret" {
		r.t.Errorf("bad request: %s %v", req.Method, req.Header)
	}
	if len(r.plan) > 0 {
		code := r.plan[0]
		r.plan = r.plan[1:]
		if code == 0 {
			hj, _ := w.(http.Hijacker)
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "planned failure", code)
		return
	}
	var batch []audit.Event
	if err := json.NewDecoder(req.Body).Decode(&batch); err != nil {
		r.t.Errorf("decode batch: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.keys = append(r.keys, req.Header.Get("Idempotency-Key"))
	r.got = append(r.got, batch...)
}

func (r *receiver) received() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.got...)
}

// runSink starts Run and returns a stop function that cancels it and
// returns its error.
func runSink(t *testing.T, src Source, cfg Config) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, src, cfg) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(patience.Left(t)):
				err = errors.New("Run did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// checkExactlyOnce checks evs are seqs 1..n in order, each once.
func checkExactlyOnce(t *testing.T, evs []audit.Event, n int) {
	t.Helper()
	if len(evs) != n {
		t.Fatalf("received %d events, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) || ev.ID != fmt.Sprintf("ev%d", i+1) {
			t.Fatalf("event %d is seq %d id %s: lost, duplicated or out of order", i, ev.Seq, ev.ID)
		}
	}
}

func readCursor(t *testing.T, path string) map[string]int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]int64
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func testConfig(t *testing.T) Config {
	return Config{
		CursorPath: filepath.Join(t.TempDir(), "cursor.json"),
		BatchSize:  40,
		Interval:   5 * time.Millisecond,
		MinBackoff: time.Millisecond,
		MaxBackoff: 40 * time.Millisecond,
		Header:     http.Header{"X-Token": {"secret"}},
	}
}

func TestWebhookRetriesUntilDelivered(t *testing.T) {
	tests := []struct {
		name string
		plan []int
	}{
		{"no failures", nil},
		{"server errors", []int{500, 503, 502, 500}},
		{"dropped connections", []int{0, 0, 0}},
		{"rate limited", []int{429, 429}},
		{"client errors are retried, not dropped", []int{400, 404}},
		{"mixed", []int{503, 0, 429, 500, 401, 503}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log := openLog(t)
			emitN(t, log, 1, 150)
			recv := newReceiver(t, tc.plan...)
			cfg := testConfig(t)
			cfg.WebhookURL = recv.srv.URL
			stop := runSink(t, log, cfg)
			// Live events arrive while the sink is retrying.
			emitN(t, log, 151, 50)
			testkit.WaitFor(t, "200 events", func() bool { return cursorAt(cfg.CursorPath, "webhook") == 200 })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkExactlyOnce(t, recv.received(), 200)
			if c := readCursor(t, cfg.CursorPath); c["webhook"] != 200 {
				t.Errorf("cursor = %v, want webhook at 200", c)
			}
			for _, ev := range recv.received() {
				if ev.Hash == "" || len(ev.Hash) != 64 {
					t.Fatalf("event %d forwarded without its hash", ev.Seq)
				}
			}
		})
	}
}

func TestWebhookBackoffPacing(t *testing.T) {
	log := openLog(t)
	emitN(t, log, 1, 1)
	// A client error waits MaxBackoff; a 429 honours Retry-After (1s)
	// capped at MaxBackoff.
	recv := newReceiver(t, 400, 429, 500)
	cfg := testConfig(t)
	cfg.WebhookURL = recv.srv.URL
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 200*time.Millisecond
	stop := runSink(t, log, cfg)
	testkit.WaitFor(t, "delivery", func() bool { return len(recv.received()) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	hits := recv.hits
	recv.mu.Unlock()
	if len(hits) != 4 {
		t.Fatalf("%d requests, want 4", len(hits))
	}
	for i, min := range []time.Duration{100 * time.Millisecond, 100 * time.Millisecond} {
		if gap := hits[i+1].Sub(hits[i]); gap < min {
			t.Errorf("retry %d came after %v, want at least %v", i+1, gap, min)
		}
	}
}

func TestBackoff(t *testing.T) {
	f := &follower{cfg: &Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second}}
	tests := []struct {
		attempt int
		err     error
		lo, hi  time.Duration
	}{
		{0, errors.New("net"), 5 * time.Millisecond, 10 * time.Millisecond},
		{1, errors.New("net"), 10 * time.Millisecond, 20 * time.Millisecond},
		{3, &statusError{code: 503}, 40 * time.Millisecond, 80 * time.Millisecond},
		{10, errors.New("net"), 500 * time.Millisecond, time.Second},
		{200, errors.New("net"), 500 * time.Millisecond, time.Second},
		{0, &statusError{code: 400}, time.Second, time.Second},
		{0, &statusError{code: 429, retryAfter: 300 * time.Millisecond}, 150 * time.Millisecond, 300 * time.Millisecond},
		{0, &statusError{code: 429, retryAfter: time.Hour}, 500 * time.Millisecond, time.Second},
	}
	for _, tc := range tests {
		for range 50 {
			if d := f.backoff(tc.attempt, tc.err); d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%d, %v) = %v, want in [%v, %v]", tc.attempt, tc.err, d, tc.lo, tc.hi)
			}
		}
	}
}

func TestRestartResumesFromCursor(t *testing.T) {
	log := openLog(t)
	emitN(t, log, 1, 100)
	recv := newReceiver(t)
	cfg := testConfig(t)
	cfg.WebhookURL = recv.srv.URL
	cfg.File = filepath.Join(t.TempDir(), "siem", "audit.jsonl")

	stop := runSink(t, log, cfg)
	testkit.WaitFor(t, "first 100", func() bool {
		return cursorAt(cfg.CursorPath, "webhook") == 100 && cursorAt(cfg.CursorPath, "file") == 100
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	emitN(t, log, 101, 100) // while the sink is down

	stop = runSink(t, log, cfg)
	testkit.WaitFor(t, "all 200", func() bool { return len(recv.received()) == 200 && fileSeqs(t, cfg.File) == 200 })
	testkit.WaitFor(t, "all 200", func() bool {
		return cursorAt(cfg.CursorPath, "webhook") == 200 && cursorAt(cfg.CursorPath, "file") == 200
	})
	emitN(t, log, 201, 5)
	testkit.WaitFor(t, "live after restart", func() bool {
		return cursorAt(cfg.CursorPath, "webhook") == 205 && cursorAt(cfg.CursorPath, "file") == 205
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, recv.received(), 205)
	checkExactlyOnce(t, readFile(t, cfg.File), 205)
	if c := readCursor(t, cfg.CursorPath); c["webhook"] != 205 || c["file"] != 205 {
		t.Errorf("cursor = %v", c)
	}
}

func TestFailingWebhookDoesNotHoldBackFile(t *testing.T) {
	log := openLog(t)
	emitN(t, log, 1, 30)
	recv := newReceiver(t, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503)
	cfg := testConfig(t)
	cfg.WebhookURL = recv.srv.URL
	cfg.File = filepath.Join(t.TempDir(), "audit.jsonl")
	cfg.MinBackoff, cfg.MaxBackoff = 50*time.Millisecond, time.Second
	stop := runSink(t, log, cfg)
	testkit.WaitFor(t, "file", func() bool { return cursorAt(cfg.CursorPath, "file") == 30 })
	if err := stop(); err != nil { // while the webhook is still failing
		t.Fatal(err)
	}
	c := readCursor(t, cfg.CursorPath)
	if c["file"] != 30 || c["webhook"] != 0 {
		t.Fatalf("cursor = %v: the webhook cursor moved past undelivered events or the file's lagged", c)
	}
	if n := len(recv.received()); n != 0 {
		t.Fatalf("webhook received %d events while failing", n)
	}
}

func TestFileRecoversAfterCrash(t *testing.T) {
	log := openLog(t)
	emitN(t, log, 1, 20)
	cfg := testConfig(t)
	cfg.File = filepath.Join(t.TempDir(), "audit.jsonl")
	stop := runSink(t, log, cfg)
	testkit.WaitFor(t, "file", func() bool { return cursorAt(cfg.CursorPath, "file") == 20 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash after the fsync of seqs up to 20 but before the
	// cursor write (cursor at 12), during the next write (half a line).
	if err := os.WriteFile(cfg.CursorPath, []byte(`{"file":12}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(cfg.File, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"event":"exec","id":"ev21","se`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	emitN(t, log, 21, 10)
	stop = runSink(t, log, cfg)
	testkit.WaitFor(t, "file", func() bool { return cursorAt(cfg.CursorPath, "file") == 30 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	evs := readFile(t, cfg.File)
	checkExactlyOnce(t, evs, 30)
	// The file is a verifiable copy of the chain.
	prev := ""
	for _, ev := range evs {
		h, err := audit.HashEvent(prev, ev)
		if err != nil || h != ev.Hash || ev.PrevHash != prev {
			t.Fatalf("seq %d does not verify from the file: %v", ev.Seq, err)
		}
		prev = h
	}
	raw, _ := os.ReadFile(cfg.File)
	if !strings.Contains(string(raw), "cmd <1> & more") {
		t.Error("file lines are HTML-escaped")
	}
	if fi, _ := os.Stat(cfg.File); fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no destination", Config{CursorPath: filepath.Join(dir, "c")}, "no File or WebhookURL"},
		{"no cursor", Config{File: filepath.Join(dir, "f")}, "empty CursorPath"},
		{"negative batch", Config{File: filepath.Join(dir, "f"), CursorPath: filepath.Join(dir, "c"), BatchSize: -1}, "negative"},
	}
	for _, tc := range tests {
		err := Run(t.Context(), openLog(t), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Run = %v, want error containing %q", tc.name, err, tc.want)
		}
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o600)
	if err := Run(t.Context(), openLog(t), Config{File: filepath.Join(dir, "f"), CursorPath: bad}); err == nil {
		t.Error("Run accepted a corrupt cursor file")
	}
}

// subscribed tells when the sink has subscribed to its source.
type subscribed struct {
	Source
	once sync.Once
	ch   chan struct{}
}

func (s *subscribed) Subscribe(ctx context.Context, afterSeq int64) (<-chan audit.Event, error) {
	ch, err := s.Source.Subscribe(ctx, afterSeq)
	s.once.Do(func() { close(s.ch) })
	return ch, err
}

func TestRunFailsWhenSourceCloses(t *testing.T) {
	b, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "warden.db")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.File = filepath.Join(t.TempDir(), "audit.jsonl")
	src := &subscribed{Source: b.AuditLog(), ch: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), src, cfg) }()
	select {
	case <-src.ch: // following the log, which then closes
	case err := <-done:
		t.Fatalf("Run = %v before it followed the log", err)
	}
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, sqlite.ErrClosed) {
			t.Fatalf("Run = %v, want ErrClosed", err)
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("Run did not return after its source closed")
	}
}

func readFile(t *testing.T, path string) []audit.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev audit.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d: %v", len(out)+1, err)
		}
		out = append(out, ev)
	}
	return out
}

// fileSeqs is the number of complete lines in path (0 if missing).
func fileSeqs(t *testing.T, path string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(raw), "\n")
}

// cursorAt is dest's persisted seq (-1 if unreadable).
func cursorAt(path, dest string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	var m map[string]int64
	if json.Unmarshal(data, &m) != nil {
		return -1
	}
	return m[dest]
}
