package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-sh/warden/internal/storage"
)

// pollPage bounds how many changes the poller reads per query.
const pollPage = 1000

type watcher struct {
	prefixes []string
	after    int64 // deliver revisions above this
	ch       chan storage.Event
	gone     chan struct{}
}

// Watch delivers, in commit order, every change committed after it returns
// to keys starting with prefix or with any of more, whichever instance
// wrote it. The channel is closed when ctx ends, when the backend closes,
// when the consumer falls Config.WatchBuffer events behind, or when the
// changes it needs were pruned from the change log while the connection
// was down: in the last two cases the consumer must re-list and watch
// again. Items in events share their Value with other watchers: treat it
// as read-only.
func (b *Backend) Watch(ctx context.Context, prefix string, more ...string) (<-chan storage.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("watch %q: %w", prefix, err)
	}
	if b.closed() {
		return nil, fmt.Errorf("watch %q: %w", prefix, ErrClosed)
	}
	// Every change that commits after this read has a higher revision.
	var rev int64
	if err := b.retryIdempotent(ctx, func() error {
		return b.pool.QueryRow(ctx, `SELECT rev FROM kv_revision WHERE id = 1`).Scan(&rev)
	}); err != nil {
		return nil, fmt.Errorf("watch %q: %w", prefix, err)
	}
	w := &watcher{
		prefixes: append([]string{prefix}, more...),
		ch:       make(chan storage.Event, b.cfg.WatchBuffer),
		gone:     make(chan struct{}),
	}
	b.watchMu.Lock()
	if b.closed() {
		b.watchMu.Unlock()
		return nil, fmt.Errorf("watch %q: %w", prefix, ErrClosed)
	}
	// Changes up to the poller's position were delivered before this
	// watch existed: they committed before Watch returned.
	w.after = max(rev, b.pos)
	b.watchers[w] = struct{}{}
	b.bg.Add(1)
	b.watchMu.Unlock()

	go func() {
		defer b.bg.Done()
		select {
		case <-ctx.Done():
		case <-b.closing:
		case <-w.gone:
			return
		}
		b.watchMu.Lock()
		b.dropWatcherLocked(w)
		b.watchMu.Unlock()
	}()
	return w.ch, nil
}

func (b *Backend) dropWatcherLocked(w *watcher) {
	if _, ok := b.watchers[w]; !ok {
		return
	}
	delete(b.watchers, w)
	close(w.ch)
	close(w.gone)
}

// poke wakes the poller without blocking.
func (b *Backend) poke() {
	select {
	case b.pokeKV <- struct{}{}:
	default:
	}
}

// pollLoop reads the change log after the last delivered revision whenever
// something wakes it (a local write, a NOTIFY, the listener reconnecting)
// and at least every PollInterval.
func (b *Backend) pollLoop(ctx context.Context) {
	defer b.bg.Done()
	t := time.NewTicker(b.cfg.PollInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.pokeKV:
		case <-t.C:
		}
		for {
			more, err := b.pollOnce(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				if failures == 1 || failures%100 == 0 {
					b.log.Warn("watch: read change log failed; retrying", "err", err, "failures", failures)
				}
				if retryable(err) {
					// A restart closed the pool's connections: drop them
					// all and read again soon, not at the next tick.
					b.pool.Reset()
					time.AfterFunc(time.Duration(min(failures, 20))*50*time.Millisecond, b.poke)
				}
				break
			}
			if failures > 0 {
				b.log.Info("watch: reading the change log again", "after_failures", failures)
				failures = 0
			}
			if !more {
				break
			}
		}
	}
}

type change struct {
	rev     int64
	typ     int16
	key     string
	value   []byte
	expires *int64
	writeID string
}

// changeFP tells one change from another made under the same revision
// number in another history (after a failover that lost commits, the new
// primary hands out their numbers again): its key and its write's random
// id.
type changeFP struct{ key, writeID string }

func (c change) fp() *changeFP { return &changeFP{c.key, c.writeID} }

// pollOnce delivers one page of changes; more is true if a full page was
// read.
func (b *Backend) pollOnce(ctx context.Context) (more bool, err error) {
	if ch := b.pausedCh(); ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	b.watchMu.Lock()
	pos, idle := b.pos, len(b.watchers) == 0
	b.watchMu.Unlock()
	if idle {
		// Nobody to deliver to: move to the current revision.
		var rev int64
		if err := b.pool.QueryRow(ctx, `SELECT rev FROM kv_revision WHERE id = 1`).Scan(&rev); err != nil {
			return false, err
		}
		b.watchMu.Lock()
		if len(b.watchers) == 0 && rev != b.pos {
			b.pos, b.posFP = rev, nil // forward, or back after a failover lost commits
		}
		b.watchMu.Unlock()
		return false, nil
	}
	// The change at pos itself comes first: it must be the one delivered
	// (else the database's history is not the one this process read).
	rows, err := b.pool.Query(ctx, `SELECT rev, type, key, value, expires, coalesce(write_id, '') FROM kv_changes
		WHERE rev >= $1 ORDER BY rev LIMIT $2`, pos, pollPage+1)
	if err != nil {
		return false, err
	}
	var page []change
	for rows.Next() {
		var c change
		if err := rows.Scan(&c.rev, &c.typ, &c.key, &c.value, &c.expires, &c.writeID); err != nil {
			rows.Close()
			return false, err
		}
		page = append(page, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	more = len(page) == pollPage+1
	b.watchMu.Lock()
	if b.pos != pos {
		b.watchMu.Unlock()
		return true, nil // moved meanwhile (idle fast-forward): read again
	}
	if len(page) > 0 && page[0].rev == pos {
		if b.posFP != nil && *b.posFP != *page[0].fp() {
			b.log.Warn("watch: the change at the last revision delivered is not the one delivered (a failover lost commits); watchers must resync",
				"revision", pos, "watchers", len(b.watchers))
			for w := range b.watchers {
				b.dropWatcherLocked(w)
			}
			last := page[len(page)-1]
			b.pos, b.posFP = last.rev, last.fp()
			b.watchMu.Unlock()
			return more, nil
		}
		page = page[1:]
	}
	if len(page) == 0 {
		b.watchMu.Unlock()
		return false, b.checkRewound(ctx, pos)
	}
	defer b.watchMu.Unlock()
	if page[0].rev != pos+1 {
		// Revisions are gapless: the changes after pos were pruned while
		// this process was not reading. Nobody can be told exactly what
		// they missed: every watcher must re-list.
		b.log.Warn("watch: changes were pruned before they were read; watchers must resync",
			"from", pos+1, "oldest_kept", page[0].rev, "watchers", len(b.watchers))
		for w := range b.watchers {
			b.dropWatcherLocked(w)
		}
		last := page[len(page)-1]
		b.pos, b.posFP = last.rev, last.fp()
		return more, nil
	}
	for _, c := range page {
		ev := storage.Event{Type: storage.EventPut, Item: storage.Item{Key: c.key, Revision: c.rev}}
		if c.typ == 2 {
			ev.Type = storage.EventDelete
		} else {
			ev.Item.Value = c.value
			if ev.Item.Value == nil {
				ev.Item.Value = []byte{}
			}
			if c.expires != nil {
				ev.Item.Expires = time.Unix(0, *c.expires).UTC()
			}
		}
		for w := range b.watchers {
			if c.rev <= w.after || !storage.HasAnyPrefix(c.key, w.prefixes) {
				continue
			}
			select {
			case w.ch <- ev:
			default:
				b.log.Warn("watcher fell behind, closing it", "prefixes", w.prefixes, "buffer", b.cfg.WatchBuffer)
				b.dropWatcherLocked(w)
			}
		}
	}
	last := page[len(page)-1]
	b.pos, b.posFP = last.rev, last.fp()
	return more, nil
}

// checkRewound closes every watcher if the database's revision is behind
// pos, the last revision delivered: the database lost commits this process
// had read (a failover to an asynchronous standby that had not received
// them). Its next revisions reuse numbers already delivered, so watchers
// must re-list, as after a pruned change log.
func (b *Backend) checkRewound(ctx context.Context, pos int64) error {
	var rev int64
	if err := b.pool.QueryRow(ctx, `SELECT rev FROM kv_revision WHERE id = 1`).Scan(&rev); err != nil {
		return err
	}
	if rev >= pos {
		return nil
	}
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	if b.pos != pos {
		return nil
	}
	b.log.Warn("watch: the database's revision went back (a failover lost commits); watchers must resync",
		"delivered", pos, "database", rev, "watchers", len(b.watchers))
	for w := range b.watchers {
		b.dropWatcherLocked(w)
	}
	b.pos, b.posFP = rev, nil
	return nil
}

// listenLoop keeps a dedicated connection LISTENing for the wake-ups of
// key-value writes and audit appends from every instance. When it drops,
// it reconnects with jittered exponential backoff and wakes the poller and
// the audit subscribers, which read what they missed from the tables.
func (b *Backend) listenLoop(ctx context.Context) {
	defer b.bg.Done()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := b.listen(ctx, func() { backoff = 50 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("watch: notification connection lost; reconnecting", "err", err, "in", backoff)
		// Until it is back, the poller's ticker reads the change log.
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (b *Backend) listen(ctx context.Context, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, b.connCfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN warden_kv; LISTEN warden_audit`); err != nil {
		return err
	}
	connected()
	// Anything committed while no one listened is read now.
	b.poke()
	b.hub.notify()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		switch n.Channel {
		case "warden_kv":
			b.poke()
		case "warden_audit":
			b.hub.notify()
		}
	}
}

// reapLoop deletes expired items every ReapInterval.
func (b *Backend) reapLoop(ctx context.Context) {
	defer b.bg.Done()
	t := time.NewTicker(b.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := b.Reap(ctx); err != nil && ctx.Err() == nil {
			b.log.Error("reap expired items", "err", err)
		}
	}
}

// reapBatch bounds how many items one reaper transaction deletes.
const reapBatch = 256

// Reap deletes every item expired at the backend clock's current time,
// each with a fresh revision and a delete event, prunes the change log, and
// returns how many items it deleted.
func (b *Backend) Reap(ctx context.Context) (int, error) {
	total := 0
	for {
		var due bool
		if err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kv WHERE expires IS NOT NULL AND expires <= $1)
			OR EXISTS (SELECT 1 FROM kv_changes WHERE rev <= (SELECT rev FROM kv_revision WHERE id = 1) - $2)`,
			b.now().UnixNano(), b.cfg.ChangeKeep).Scan(&due); err != nil {
			return total, fmt.Errorf("reap: %w", err)
		}
		if !due {
			return total, nil
		}
		var n int
		if err := b.pool.QueryRow(ctx, `SELECT warden_kv_reap($1, $2, $3)`, b.now().UnixNano(), reapBatch, b.cfg.ChangeKeep).Scan(&n); err != nil {
			return total, fmt.Errorf("reap: %w", err)
		}
		total += n
		if n > 0 {
			b.poke()
		}
		if n < reapBatch {
			return total, nil
		}
	}
}

// pausedCh is non-nil while a test holds the poller (see export_test.go).
func (b *Backend) pausedCh() chan struct{} {
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	return b.paused
}
