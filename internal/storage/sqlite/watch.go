package sqlite

import (
	"context"
	"fmt"

	"github.com/warden-sh/warden/internal/storage"
)

// DefaultWatchBuffer is the per-watcher event buffer when
// Config.WatchBuffer is zero.
const DefaultWatchBuffer = 1024

type watcher struct {
	prefixes []string
	ch       chan storage.Event
	gone     chan struct{} // closed when the watcher is dropped
}

// Watch delivers, in commit order, every change committed after it returns
// to keys starting with prefix or with any of more (once per change). The
// channel is closed when ctx ends, when the backend closes, or when the
// consumer falls Config.WatchBuffer events behind; in the last case the
// consumer must re-list and watch again. Items in events share their Value
// with other watchers: treat it as read-only.
func (b *Backend) Watch(ctx context.Context, prefix string, more ...string) (<-chan storage.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("watch %q: %w", prefix, err)
	}
	w := &watcher{
		prefixes: append([]string{prefix}, more...),
		ch:       make(chan storage.Event, b.cfg.WatchBuffer),
		gone:     make(chan struct{}),
	}
	// Taking wmu orders registration with writes: every write that
	// commits after Watch returns is delivered.
	b.wmu.Lock()
	b.watchMu.Lock()
	if b.closed() {
		b.watchMu.Unlock()
		b.wmu.Unlock()
		return nil, fmt.Errorf("watch %q: %w", prefix, ErrClosed)
	}
	b.watchers[w] = struct{}{}
	b.bg.Add(1)
	b.watchMu.Unlock()
	b.wmu.Unlock()

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

// broadcast hands events to every matching watcher without blocking. It is
// called with wmu held, right after the events' transaction committed.
func (b *Backend) broadcast(events []storage.Event) {
	if len(events) == 0 {
		return
	}
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	for w := range b.watchers {
		for _, ev := range events {
			if !storage.HasAnyPrefix(ev.Item.Key, w.prefixes) {
				continue
			}
			select {
			case w.ch <- ev:
			default:
				b.log.Warn("watcher fell behind, closing it", "prefixes", w.prefixes, "buffer", b.cfg.WatchBuffer)
				b.dropWatcherLocked(w)
			}
			if _, ok := b.watchers[w]; !ok {
				break
			}
		}
	}
}

// dropWatcherLocked removes w and closes its channel once. watchMu is held.
func (b *Backend) dropWatcherLocked(w *watcher) {
	if _, ok := b.watchers[w]; !ok {
		return
	}
	delete(b.watchers, w)
	close(w.ch)
	close(w.gone)
}
