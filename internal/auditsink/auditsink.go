// Package auditsink forwards the audit log to a SIEM: it follows the log by
// seq and appends the events to a JSON-lines file and/or POSTs them to a
// webhook in batches. Each destination keeps its own position in a cursor
// file, advanced only after a batch was delivered (fsynced, or answered 2xx),
// so a restart neither loses nor repeats events: the file destination is
// exactly-once (it also reads its own last line back on start), the webhook
// at-least-once if the process dies between a 2xx and the cursor write
// (receivers deduplicate by "seq" or "id").
//
// Forwarded events carry "prev_hash" and "hash": a SIEM holding them can
// check the chain itself and detects a rewritten log that Verify, looking
// only at the database, cannot.
package auditsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/audit"
)

// Defaults for zero Config fields.
const (
	DefaultBatchSize  = 100
	DefaultInterval   = time.Second
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = time.Minute
	DefaultTimeout    = 30 * time.Second
)

// Source is the audit log to follow (sqlite.AuditLog implements it).
type Source interface {
	// Subscribe delivers the events with Seq > afterSeq in seq order,
	// stored ones first and then new ones, until ctx ends; it may close
	// the channel early (the sink then subscribes again).
	Subscribe(ctx context.Context, afterSeq int64) (<-chan audit.Event, error)
}

// Config configures Run. At least one of File and WebhookURL is required.
type Config struct {
	// File, if set, receives one JSON event per line (created 0600),
	// fsynced after every batch.
	File string
	// WebhookURL, if set, receives POSTs of JSON arrays of events.
	WebhookURL string
	// Header is added to every webhook request (e.g. Authorization).
	Header http.Header
	// BatchSize is the most events per write or POST (DefaultBatchSize).
	BatchSize int
	// Interval is how long a batch may wait to fill up once it holds an
	// event (DefaultInterval).
	Interval time.Duration
	// CursorPath is where delivery positions are kept (required).
	CursorPath string
	// HTTPClient sends webhook requests (a client with DefaultTimeout if
	// nil).
	HTTPClient *http.Client
	// Logger receives delivery failures (discarded if nil).
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the delay between delivery attempts
	// (DefaultMinBackoff, DefaultMaxBackoff). The delay doubles on every
	// failure, with jitter; a client error other than 429 waits MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
}

func (c *Config) validate() error {
	if c.File == "" && c.WebhookURL == "" {
		return errors.New("audit sink: no File or WebhookURL")
	}
	if c.CursorPath == "" {
		return errors.New("audit sink: empty CursorPath")
	}
	if c.BatchSize < 0 || c.Interval < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 {
		return errors.New("audit sink: negative BatchSize, Interval or backoff")
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// destination is one place events are delivered to.
type destination interface {
	name() string
	// deliver writes evs (all newer than the destination's cursor) and
	// returns nil only once they are durably accepted.
	deliver(ctx context.Context, evs []audit.Event) error
}

// Run forwards src's events to the configured destinations until ctx ends,
// then returns nil. Each destination follows the log on its own, so a
// failing webhook does not hold the file back. Run returns an error if the
// configuration, the cursor file or a subscription fails.
func Run(ctx context.Context, src Source, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	cur, err := openCursor(cfg.CursorPath)
	if err != nil {
		return fmt.Errorf("audit sink: %w", err)
	}
	var dests []destination
	if cfg.File != "" {
		f, err := openFileDest(cfg.File)
		if err != nil {
			return fmt.Errorf("audit sink: %w", err)
		}
		defer f.close()
		// The file itself says what reached it: a crash between the fsync
		// and the cursor write must not duplicate a batch.
		if f.lastSeq > cur.get(f.name()) {
			if err := cur.set(f.name(), f.lastSeq); err != nil {
				return fmt.Errorf("audit sink: %w", err)
			}
		}
		dests = append(dests, f)
	}
	if cfg.WebhookURL != "" {
		dests = append(dests, &webhookDest{url: cfg.WebhookURL, header: cfg.Header, client: cfg.HTTPClient})
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for _, d := range dests {
		wg.Go(func() {
			f := follower{cfg: &cfg, src: src, dest: d, cur: cur,
				log: cfg.Logger.With("component", "auditsink", "destination", d.name())}
			if err := f.run(ctx); err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
			}
		})
	}
	wg.Wait()
	return firstErr
}

// follower moves one destination along the log.
type follower struct {
	cfg  *Config
	src  Source
	dest destination
	cur  *cursor
	log  *slog.Logger
}

func (f *follower) run(ctx context.Context) error {
	for ctx.Err() == nil {
		after := f.cur.get(f.dest.name())
		ch, err := f.src.Subscribe(ctx, after)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("audit sink %s: subscribe after seq %d: %w", f.dest.name(), after, err)
		}
		if err := f.follow(ctx, ch); err != nil {
			return err
		}
		if ctx.Err() == nil {
			// The source ended the subscription: resubscribe from the cursor.
			f.log.Warn("audit subscription ended; resubscribing", "after_seq", f.cur.get(f.dest.name()))
			if !sleep(ctx, f.cfg.MinBackoff) {
				return nil
			}
		}
	}
	return nil
}

// follow delivers batches from ch until it closes or ctx ends.
func (f *follower) follow(ctx context.Context, ch <-chan audit.Event) error {
	for {
		batch, open := f.collect(ctx, ch)
		if len(batch) > 0 {
			if !f.deliver(ctx, batch) {
				return nil // ctx ended; the batch stays after the cursor
			}
			if err := f.cur.set(f.dest.name(), batch[len(batch)-1].Seq); err != nil {
				return fmt.Errorf("audit sink %s: %w", f.dest.name(), err)
			}
		}
		if !open || ctx.Err() != nil {
			return nil
		}
	}
}

// collect waits for an event newer than the cursor, then gathers more until
// the batch is full or Interval has passed. open is false once ch closed.
func (f *follower) collect(ctx context.Context, ch <-chan audit.Event) (batch []audit.Event, open bool) {
	after := f.cur.get(f.dest.name())
	var timeout <-chan time.Time
	for len(batch) < f.cfg.BatchSize {
		select {
		case ev, ok := <-ch:
			if !ok {
				return batch, false
			}
			if ev.Seq <= after {
				continue // already delivered
			}
			after = ev.Seq
			batch = append(batch, ev)
			if timeout == nil {
				t := time.NewTimer(f.cfg.Interval)
				defer t.Stop()
				timeout = t.C
			}
		case <-timeout:
			return batch, true
		case <-ctx.Done():
			return nil, true
		}
	}
	return batch, true
}

// deliver retries batch until the destination accepts it; false if ctx
// ended first.
func (f *follower) deliver(ctx context.Context, batch []audit.Event) bool {
	for attempt := 0; ; attempt++ {
		err := f.dest.deliver(ctx, batch)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		delay := f.backoff(attempt, err)
		f.log.Warn("audit delivery failed; retrying", "first_seq", batch[0].Seq, "last_seq", batch[len(batch)-1].Seq,
			"attempt", attempt+1, "retry_in", delay, "err", err)
		if !sleep(ctx, delay) {
			return false
		}
	}
}

// backoff is the delay before retry number attempt+1: exponential from
// MinBackoff with "equal jitter" (half fixed, half random) up to MaxBackoff;
// MaxBackoff for a request the receiver refuses (it needs a person, not
// a hammering), and at least a 429's Retry-After.
func (f *follower) backoff(attempt int, err error) time.Duration {
	lo, hi := f.cfg.MinBackoff, f.cfg.MaxBackoff
	d := hi
	if attempt < 62 && lo<<attempt > 0 && lo<<attempt < hi {
		d = lo << attempt
	}
	var se *statusError
	if errors.As(err, &se) {
		switch {
		case se.code == http.StatusTooManyRequests:
			d = max(d, min(se.retryAfter, hi))
		case se.code >= 400 && se.code < 500:
			return hi
		}
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
