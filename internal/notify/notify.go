// Package notify delivers short event notifications (such as a new access
// request) to webhooks: Slack-compatible incoming webhooks or a plain JSON
// format for chat bridges and ticketing systems.
//
// Delivery is asynchronous and best effort: Notify never blocks the caller,
// each target has its own ordered queue and worker, and transient failures
// (network errors, 429, 5xx) are retried with exponential backoff and
// jitter. Webhook URLs often embed a secret, so they never appear in logs or
// errors; only the scheme and host do.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
)

// Formats of a target.
const (
	FormatSlack = "slack"
	FormatJSON  = "json"
)

// Defaults.
const (
	DefaultMaxAttempts    = 8
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultAttemptTimeout = 10 * time.Second
	DefaultQueueSize      = 1000
	// UserAgent is sent with every delivery.
	UserAgent = "warden-notify"
)

var (
	// ErrClosed: the notifier was closed before the message was delivered.
	ErrClosed = errors.New("notifier closed")
	// ErrQueueFull: the target's queue was full and the message was dropped.
	ErrQueueFull = errors.New("notification queue full")
)

// Target is one webhook.
type Target struct {
	URL string `yaml:"url" json:"url"`
	// Format is "slack" or "json" (the default).
	Format string `yaml:"format" json:"format"`
	// Events the target receives: exact names or globs such as
	// "access_request.*". Empty means all.
	Events []string `yaml:"events,omitempty" json:"events,omitempty"`
}

// Redacted returns the target URL without path, query or fragment, for logs
// and audit events (webhook URLs often carry a secret in the path).
func (t Target) Redacted() string {
	u, err := url.Parse(t.URL)
	if err != nil || u.Host == "" {
		return "(invalid url)"
	}
	return u.Scheme + "://" + u.Host
}

// wants reports whether the target subscribes to event.
func (t Target) wants(event string) bool {
	if len(t.Events) == 0 {
		return true
	}
	for _, p := range t.Events {
		if p == event || p == "*" {
			return true
		}
		if ok, err := path.Match(p, event); err == nil && ok {
			return true
		}
	}
	return false
}

// Message is one notification.
type Message struct {
	// Event names what happened, e.g. "access_request.create".
	Event string
	// Text is one line for humans.
	Text string
	// Link points to the thing, e.g. the request in the web UI; optional.
	Link string
	// Command is the CLI command that acts on it, e.g. "warden request
	// review ID" (while there is no web page to link to); optional.
	Command string
	// Fields are structured details (never secrets), sent in the JSON
	// format only.
	Fields map[string]any
	// Time of the event; zero means when Notify was called.
	Time time.Time
}

// Config configures a Notifier.
type Config struct {
	Targets []Target
	// HTTPClient sends the webhooks; by default a client that does not
	// follow redirects.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// MaxAttempts per message and target (default 8).
	MaxAttempts int
	// InitialBackoff before the first retry, doubling after each (default
	// 500ms), up to MaxBackoff (default 30s). Each wait is jittered.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// AttemptTimeout bounds one HTTP attempt (default 10s).
	AttemptTimeout time.Duration
	// OnResult, if set, is called exactly once per message and target that
	// the message was meant for, with the number of HTTP attempts made and
	// the final error (nil when delivered). It runs on the target's worker,
	// or on the caller of Notify when the message is dropped immediately.
	OnResult func(t Target, m Message, attempts int, err error)
	// QueueSize is the number of pending messages per target (default 1000);
	// beyond it messages are dropped with ErrQueueFull.
	QueueSize int
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// Notifier delivers messages to webhooks. Create it with New and stop it
// with Close.
type Notifier struct {
	cfg     Config
	log     *slog.Logger
	client  *http.Client
	workers []*worker

	mu     sync.RWMutex // guards closed and sends on worker queues
	closed bool

	// abort cancels in-flight attempts and backoff waits when Close runs
	// out of time.
	abort     context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// New validates cfg and starts one worker per target.
func New(cfg Config) (*Notifier, error) {
	for i := range cfg.Targets {
		if err := validateTarget(&cfg.Targets[i]); err != nil {
			return nil, fmt.Errorf("notify: targets[%d]: %w", i, err)
		}
	}
	if cfg.MaxAttempts < 0 || cfg.InitialBackoff < 0 || cfg.MaxBackoff < 0 || cfg.AttemptTimeout < 0 || cfg.QueueSize < 0 {
		return nil, errors.New("notify: attempts, backoffs, timeout and queue size must not be negative")
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = DefaultInitialBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.InitialBackoff)
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := &Notifier{cfg: cfg, log: cfg.Logger, client: cfg.HTTPClient, done: make(chan struct{})}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.client == nil {
		n.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	n.abort, n.cancel = context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, t := range cfg.Targets {
		w := &worker{n: n, t: t, q: make(chan job, cfg.QueueSize)}
		n.workers = append(n.workers, w)
		wg.Go(w.run)
	}
	go func() {
		wg.Wait()
		close(n.done)
	}()
	return n, nil
}

func validateTarget(t *Target) error {
	if t.URL == "" {
		return errors.New("url is required")
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return errors.New("url is not a valid URL") // the parse error would echo the URL
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("url has no host")
	}
	if u.User != nil {
		return errors.New("url must not contain a user name or password")
	}
	switch t.Format {
	case "":
		t.Format = FormatJSON
	case FormatSlack, FormatJSON:
	default:
		return fmt.Errorf("format must be %q or %q, got %q", FormatSlack, FormatJSON, t.Format)
	}
	for i, e := range t.Events {
		if e == "" {
			return fmt.Errorf("events[%d] is empty", i)
		}
		if _, err := path.Match(e, ""); err != nil {
			return fmt.Errorf("events[%d]: invalid pattern %q", i, e)
		}
	}
	return nil
}

// Notify queues m for every target that wants m.Event. It never blocks;
// when a queue is full or the notifier is closed the message is dropped for
// that target and OnResult reports ErrQueueFull or ErrClosed.
func (n *Notifier) Notify(m Message) {
	if m.Time.IsZero() {
		m.Time = n.cfg.Now()
	}
	type drop struct {
		t   Target
		err error
	}
	var drops []drop
	n.mu.RLock()
	for _, w := range n.workers {
		if !w.t.wants(m.Event) {
			continue
		}
		if n.closed {
			drops = append(drops, drop{w.t, ErrClosed})
			continue
		}
		id, err := deliveryID()
		if err != nil {
			drops = append(drops, drop{w.t, fmt.Errorf("delivery id: %w", err)})
			continue
		}
		select {
		case w.q <- job{m: m, id: id}:
		default:
			n.log.Warn("notification dropped: queue full", "dest", w.t.Redacted(), "event", m.Event)
			drops = append(drops, drop{w.t, ErrQueueFull})
		}
	}
	n.mu.RUnlock()
	// Report outside the lock: OnResult may call back into the notifier.
	for _, d := range drops {
		n.result(d.t, m, 0, d.err)
	}
}

// Close stops accepting messages and delivers what is queued until ctx
// ends; then it abandons the rest (OnResult reports ErrClosed for each) and
// returns ctx's error. It is safe to call more than once.
func (n *Notifier) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		for _, w := range n.workers {
			close(w.q)
		}
		n.mu.Unlock()
	})
	var err error
	select {
	case <-n.done:
	case <-ctx.Done():
		err = fmt.Errorf("notify: close before all messages were delivered: %w", ctx.Err())
		n.cancel()
		<-n.done // workers stop promptly once aborted
	}
	n.cancel()
	n.client.CloseIdleConnections()
	return err
}

func (n *Notifier) result(t Target, m Message, attempts int, err error) {
	if n.cfg.OnResult != nil {
		n.cfg.OnResult(t, m, attempts, err)
	}
}

// stripURL returns err without the request URL: *url.Error
// includes the full request URL, which may hold a secret.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("%s: timeout: %w", strings.ToLower(ue.Op), ue.Err)
		}
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}
