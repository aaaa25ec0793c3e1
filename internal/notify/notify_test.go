package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/warden-sh/warden/internal/patience"
)

func TestMain(m *testing.M) {
	os.Exit(patience.LeakCheck(m.Run()))
}

type result struct {
	target   Target
	msg      Message
	attempts int
	err      error
}

// recorder collects OnResult calls.
type recorder struct {
	mu  sync.Mutex
	got []result
	ch  chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 10000)} }

func (r *recorder) on(t Target, m Message, attempts int, err error) {
	r.mu.Lock()
	r.got = append(r.got, result{t, m, attempts, err})
	r.mu.Unlock()
	r.ch <- struct{}{}
}

// wait blocks until n results arrived and returns them.
func (r *recorder) wait(t *testing.T, n int) []result {
	t.Helper()
	timeout := time.After(patience.Left(t))
	for range n {
		select {
		case <-r.ch:
		case <-timeout:
			t.Fatalf("timed out waiting for %d results", n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]result(nil), r.got...)
}

type hit struct {
	header http.Header
	body   []byte
}

// server records requests and answers with codes[i] for request i (200
// after the list ends).
type server struct {
	*httptest.Server
	mu    sync.Mutex
	hits  []hit
	codes []int
}

func newServer(t *testing.T, codes ...int) *server {
	s := &server{codes: codes}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		i := len(s.hits)
		s.hits = append(s.hits, hit{r.Header.Clone(), b})
		code := http.StatusOK
		if i < len(s.codes) {
			code = s.codes[i]
		}
		s.mu.Unlock()
		if r.Method != http.MethodPost {
			code = http.StatusMethodNotAllowed
		}
		w.WriteHeader(code)
		io.WriteString(w, "ok\n")
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hit(nil), s.hits...)
}

func newNotifier(t *testing.T, cfg Config) *Notifier {
	t.Helper()
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = time.Millisecond
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close(patience.Context(t)) })
	return n
}

var when = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func sample() Message {
	return Message{
		Event:   "access_request.create",
		Text:    "alice requested role ops: deploy <@here> & more",
		Link:    "https://warden.example/web/requests/abc?x=1|2",
		Command: "warden request review abc <&`>",
		Fields:  map[string]any{"id": "abc", "roles": []string{"ops"}, "approvals": 0},
		Time:    when,
	}
}

func TestSlackBody(t *testing.T) {
	srv := newServer(t)
	rec := newRecorder()
	n := newNotifier(t, Config{Targets: []Target{{URL: srv.URL + "/services/T/B/secret", Format: FormatSlack}}, OnResult: rec.on})
	n.Notify(sample())
	res := rec.wait(t, 1)
	if res[0].err != nil || res[0].attempts != 1 {
		t.Fatalf("result = %+v", res[0])
	}
	hits := srv.requests()
	var body map[string]any
	if err := json.Unmarshal(hits[0].body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"text": "alice requested role ops: deploy &lt;@here&gt; &amp; more <https://warden.example/web/requests/abc?x=1%7C2|open>\n`warden request review abc &lt;&amp;'&gt;`"}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("slack body (-want +got):\n%s", diff)
	}
	h := hits[0].header
	if h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != UserAgent || len(h.Get("X-Warden-Delivery")) != 32 {
		t.Errorf("headers = %v", h)
	}
}

func TestSlackTextWithoutLink(t *testing.T) {
	if got := SlackText("a<b", "", ""); got != "a&lt;b" {
		t.Errorf("SlackText = %q", got)
	}
	if got := SlackText("a<b", "", "warden request review 12"); got != "a&lt;b\n`warden request review 12`" {
		t.Errorf("SlackText with a command = %q", got)
	}
}

func TestJSONBody(t *testing.T) {
	srv := newServer(t)
	rec := newRecorder()
	n := newNotifier(t, Config{Targets: []Target{{URL: srv.URL}}, OnResult: rec.on}) // format defaults to json
	n.Notify(sample())
	n.Notify(Message{Event: "access_request.review", Text: "t"}) // no time, no fields
	rec.wait(t, 2)
	hits := srv.requests()
	var body map[string]any
	if err := json.Unmarshal(hits[0].body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"event":   "access_request.create",
		"text":    "alice requested role ops: deploy <@here> & more",
		"link":    "https://warden.example/web/requests/abc?x=1|2",
		"command": "warden request review abc <&`>",
		"fields":  map[string]any{"id": "abc", "roles": []any{"ops"}, "approvals": float64(0)},
		"time":    "2026-11-03T10:00:00Z",
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("json body (-want +got):\n%s", diff)
	}
	var second map[string]any
	if err := json.Unmarshal(hits[1].body, &second); err != nil {
		t.Fatal(err)
	}
	if ts, _ := time.Parse(time.RFC3339, second["time"].(string)); ts.IsZero() || time.Since(ts) > time.Minute {
		t.Errorf("default time = %v", second["time"])
	}
	if f, ok := second["fields"].(map[string]any); !ok || len(f) != 0 {
		t.Errorf("fields = %#v, want {}", second["fields"])
	}
	if _, ok := second["link"]; ok {
		t.Errorf("a message without a link has one: %v", second)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		codes    []int
		max      int
		attempts int
		status   int // expected StatusError code, 0 for success
	}{
		{"500 twice then success", []int{500, 502}, 0, 3, 0},
		{"429 is retried", []int{429}, 0, 2, 0},
		{"400 is not retried", []int{400, 200}, 0, 1, 400},
		{"404 is not retried", []int{404}, 0, 1, 404},
		{"redirect is not followed nor retried", []int{302}, 0, 1, 302},
		{"gives up after MaxAttempts", []int{503, 503, 503, 503, 200}, 4, 4, 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.codes...)
			rec := newRecorder()
			n := newNotifier(t, Config{Targets: []Target{{URL: srv.URL}}, OnResult: rec.on, MaxAttempts: tc.max})
			n.Notify(sample())
			res := rec.wait(t, 1)[0]
			if res.attempts != tc.attempts {
				t.Errorf("attempts = %d, want %d", res.attempts, tc.attempts)
			}
			var se *StatusError
			switch {
			case tc.status == 0 && res.err != nil:
				t.Errorf("err = %v, want success", res.err)
			case tc.status != 0 && (!errors.As(res.err, &se) || se.Code != tc.status):
				t.Errorf("err = %v, want status %d", res.err, tc.status)
			}
			hits := srv.requests()
			if len(hits) != tc.attempts {
				t.Fatalf("server saw %d requests, want %d", len(hits), tc.attempts)
			}
			for _, h := range hits[1:] {
				if h.header.Get("X-Warden-Delivery") != hits[0].header.Get("X-Warden-Delivery") || string(h.body) != string(hits[0].body) {
					t.Errorf("retry differs from the first attempt")
				}
			}
		})
	}
}

func TestNetworkErrorRetriedWithoutLeakingURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/hooks/s3cr3t-token"
	srv.Close() // connection refused from now on
	rec := newRecorder()
	n := newNotifier(t, Config{Targets: []Target{{URL: url}}, OnResult: rec.on, MaxAttempts: 3})
	n.Notify(sample())
	res := rec.wait(t, 1)[0]
	if res.attempts != 3 || res.err == nil {
		t.Fatalf("result = %d attempts, err %v", res.attempts, res.err)
	}
	if strings.Contains(res.err.Error(), "s3cr3t") {
		t.Errorf("error leaks the URL: %v", res.err)
	}
}

func TestAttemptTimeout(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
	}))
	defer srv.Close()
	defer close(release)
	rec := newRecorder()
	n := newNotifier(t, Config{Targets: []Target{{URL: srv.URL}}, OnResult: rec.on, AttemptTimeout: 100 * time.Millisecond})
	n.Notify(sample())
	// The first attempt hangs until its timeout; a later one succeeds (on
	// a loaded machine, a quick answer may miss 100 ms too).
	res := rec.wait(t, 1)[0]
	if res.err != nil || res.attempts < 2 {
		t.Fatalf("result = %d attempts, err %v; want success after the first attempt timed out", res.attempts, res.err)
	}
}

func TestPerTargetOrdering(t *testing.T) {
	// Every third request fails once, so retries interleave with the queue.
	var mu sync.Mutex
	var order []string
	failed := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b jsonBody
		json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		defer mu.Unlock()
		if len(order)%3 == 0 && !failed[b.Text] {
			failed[b.Text] = true
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		order = append(order, b.Text)
	}))
	defer srv.Close()
	slow := newServer(t)
	rec := newRecorder()
	n := newNotifier(t, Config{Targets: []Target{{URL: srv.URL}, {URL: slow.URL, Format: FormatSlack}}, OnResult: rec.on})
	var want []string
	for i := range 40 {
		text := "m" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		want = append(want, text)
		n.Notify(Message{Event: "e", Text: text})
	}
	res := rec.wait(t, 80)
	for _, r := range res {
		if r.err != nil {
			t.Fatalf("delivery failed: %v", r.err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	var slackOrder []string
	for _, h := range slow.requests() {
		var b slackBody
		json.Unmarshal(h.body, &b)
		slackOrder = append(slackOrder, b.Text)
	}
	if diff := cmp.Diff(want, slackOrder); diff != "" {
		t.Errorf("slack target order (-want +got):\n%s", diff)
	}
}

func TestEventFilter(t *testing.T) {
	all, reviews, requests := newServer(t), newServer(t), newServer(t)
	rec := newRecorder()
	n := newNotifier(t, Config{Targets: []Target{
		{URL: all.URL},
		{URL: reviews.URL, Events: []string{"access_request.review"}},
		{URL: requests.URL, Events: []string{"access_request.*"}},
	}, OnResult: rec.on})
	n.Notify(Message{Event: "access_request.create"})
	n.Notify(Message{Event: "access_request.review"})
	n.Notify(Message{Event: "lock.create"})
	rec.wait(t, 3+1+2)
	if got := []int{len(all.requests()), len(reviews.requests()), len(requests.requests())}; !cmp.Equal(got, []int{3, 1, 2}) {
		t.Errorf("requests per target = %v, want [3 1 2]", got)
	}
}

func TestCloseDrains(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
	}))
	defer srv.Close()
	rec := newRecorder()
	n, err := New(Config{Targets: []Target{{URL: srv.URL}}, OnResult: rec.on})
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		n.Notify(sample())
	}
	ctx := patience.Context(t)
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	res := rec.wait(t, 30)
	for _, r := range res {
		if r.err != nil || r.attempts != 1 {
			t.Fatalf("result %+v", r)
		}
	}
	// Closed: further messages are reported dropped, and Close is idempotent.
	n.Notify(sample())
	if r := rec.wait(t, 1)[30]; !errors.Is(r.err, ErrClosed) || r.attempts != 0 {
		t.Errorf("after close: %+v", r)
	}
	if err := n.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseAbandonsWhenContextEnds(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	rec := newRecorder()
	// The attempt in flight never ends by itself: only Close's context
	// can end the wait for it.
	n, err := New(Config{Targets: []Target{{URL: srv.URL}}, OnResult: rec.on, AttemptTimeout: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		n.Notify(sample())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- n.Close(ctx) }()
	select {
	case err := <-closed:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close = %v, want deadline exceeded", err)
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("Close did not return after its context ended")
	}
	res := rec.wait(t, 5)
	if len(res) != 5 {
		t.Fatalf("%d results, want exactly one per message", len(res))
	}
	for _, r := range res {
		if !errors.Is(r.err, ErrClosed) {
			t.Errorf("abandoned message: err = %v, want ErrClosed", r.err)
		}
	}
}

func TestQueueFull(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	rec := newRecorder()
	n := newNotifier(t, Config{Targets: []Target{{URL: srv.URL}}, OnResult: rec.on, QueueSize: 2})
	// One in flight (maybe), two queued; the rest must be dropped without
	// blocking.
	for range 10 {
		n.Notify(sample())
	}
	res := rec.wait(t, 7)
	for _, r := range res[:7] {
		if !errors.Is(r.err, ErrQueueFull) {
			t.Errorf("err = %v, want ErrQueueFull", r.err)
		}
	}
	close(block)
	all := rec.wait(t, 3)
	if len(all) != 10 {
		t.Errorf("%d results, want 10", len(all))
	}
}

func TestNewValidatesTargets(t *testing.T) {
	tests := []struct {
		name string
		t    Target
		frag string
	}{
		{"empty", Target{}, "required"},
		{"ftp", Target{URL: "ftp://example.com/x"}, "http or https"},
		{"file", Target{URL: "file:///etc/passwd"}, "http or https"},
		{"relative", Target{URL: "/hooks/x"}, "http or https"},
		{"no host", Target{URL: "https:///x"}, "no host"},
		{"port only", Target{URL: "https://:443/x"}, "no host"},
		{"userinfo", Target{URL: "https://user:pw@example.com/x"}, "user name or password"},
		{"unparsable", Target{URL: "https://exa mple.com/%zz"}, "not a valid URL"},
		{"bad format", Target{URL: "https://example.com", Format: "xml"}, "format"},
		{"bad event pattern", Target{URL: "https://example.com", Events: []string{"a["}}, "invalid pattern"},
		{"empty event", Target{URL: "https://example.com", Events: []string{""}}, "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{Targets: []Target{tc.t}})
			if err == nil || !strings.Contains(err.Error(), tc.frag) {
				t.Fatalf("err = %v, want one containing %q", err, tc.frag)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("error leaks credentials: %v", err)
			}
		})
	}
	if _, err := New(Config{MaxAttempts: -1}); err == nil {
		t.Error("negative MaxAttempts accepted")
	}
	n, err := New(Config{Targets: []Target{{URL: "HTTPS://Example.com/hook", Format: FormatSlack}}})
	if err != nil {
		t.Fatalf("valid target refused: %v", err)
	}
	n.Close(context.Background())
}

func TestNoTargets(t *testing.T) {
	n := newNotifier(t, Config{OnResult: func(Target, Message, int, error) { t.Error("OnResult without targets") }})
	n.Notify(sample())
}

func TestRedacted(t *testing.T) {
	got := Target{URL: "https://hooks.slack.com/services/T0/B0/secret?x=1"}.Redacted()
	if got != "https://hooks.slack.com" {
		t.Errorf("Redacted = %q", got)
	}
}

func TestBackoff(t *testing.T) {
	for attempt := 1; attempt <= 12; attempt++ {
		ceil := min(500*time.Millisecond<<(attempt-1), 30*time.Second)
		for range 50 {
			d := backoff(500*time.Millisecond, 30*time.Second, attempt)
			if d < ceil/2 || d > ceil {
				t.Fatalf("attempt %d: backoff %s outside [%s, %s]", attempt, d, ceil/2, ceil)
			}
		}
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	var calls atomic.Int32
	var first, second time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		second = time.Now()
	}))
	defer srv.Close()
	rec := newRecorder()
	n := newNotifier(t, Config{Targets: []Target{{URL: srv.URL}}, OnResult: rec.on})
	n.Notify(sample())
	if r := rec.wait(t, 1)[0]; r.err != nil || r.attempts != 2 {
		t.Fatalf("result %+v", r)
	}
	if gap := second.Sub(first); gap < 900*time.Millisecond {
		t.Errorf("retried after %s despite Retry-After: 1", gap)
	}
}
