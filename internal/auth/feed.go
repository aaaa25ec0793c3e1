package auth

import (
	"context"
	"log/slog"
	"time"

	"github.com/warden-sh/warden/internal/storage"
)

// feed keeps an in-memory view of a key prefix: a full listing, then every
// change from a watch; when the watch breaks or falls behind it re-lists.
type feed struct {
	b      storage.Backend
	log    *slog.Logger
	prefix string
	reset  func([]storage.Item)
	apply  func(storage.Event)
	cancel context.CancelFunc
	done   chan struct{}
}

func (f *feed) start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel = cancel
	f.done = make(chan struct{})
	ch, err := f.resync(ctx)
	if err != nil {
		cancel()
		close(f.done)
		return err
	}
	go func() {
		defer close(f.done)
		for {
			for ev := range ch {
				f.apply(ev)
			}
			if ctx.Err() != nil {
				return
			}
			for {
				ch, err = f.resync(ctx)
				if err == nil {
					break
				}
				f.log.Warn("watch failed, retrying", "prefix", f.prefix, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return nil
}

// resync watches first, then lists, so no change between the two is lost
// (a change seen twice is applied idempotently).
func (f *feed) resync(ctx context.Context) (<-chan storage.Event, error) {
	ch, err := f.b.Watch(ctx, f.prefix)
	if err != nil {
		return nil, err
	}
	items, err := f.b.List(ctx, f.prefix, 0)
	if err != nil {
		return nil, err
	}
	f.reset(items)
	return ch, nil
}

func (f *feed) stop() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
	}
}
