package sqlite

import (
	"context"
	"fmt"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/auditchain"
)

// Subscribe delivers, in seq order, every event with Seq > afterSeq: first
// those already stored, then new ones as they commit, with no gap or
// duplicate between the two. The channel is closed when ctx ends, when the
// backend closes, or on a read error (logged); resubscribe from the last
// Seq received. Events deleted by DeleteBefore before a slow subscriber
// reached them are skipped.
//
// The database is the source of truth: a commit only wakes subscribers,
// which then read what follows their last seq. The single writer commits
// events in seq order, so a read never sees a later event without the
// earlier ones.
func (a *AuditLog) Subscribe(ctx context.Context, afterSeq int64) (<-chan audit.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("subscribe to audit log: %w", err)
	}
	wake := make(chan struct{}, 1)
	b := a.b
	// Registering before the first read means no commit is missed: one
	// that lands after the read wakes us.
	a.hub.subs.Add(wake)
	// Ordered with Close as Watch is: Close waits for this goroutine.
	b.watchMu.Lock()
	if b.closed() {
		b.watchMu.Unlock()
		a.hub.subs.Remove(wake)
		return nil, fmt.Errorf("subscribe to audit log: %w", ErrClosed)
	}
	b.bg.Add(1)
	b.watchMu.Unlock()

	out := make(chan audit.Event, 64)
	f := auditchain.Follower{
		Search: a.Search, Wake: wake, Closing: b.closing, Closed: b.closed,
		ReadFailed: func(last int64, _ int, err error) bool {
			b.log.Error("audit subscriber: read failed", "after_seq", last, "err", err)
			return false
		},
	}
	go func() {
		defer b.bg.Done()
		defer close(out)
		defer a.hub.subs.Remove(wake)
		f.Follow(ctx, afterSeq, out)
	}()
	return out, nil
}
