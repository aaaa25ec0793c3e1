package auditchain

import (
	"context"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/audit"
)

// SubscribePage is how many events a subscriber reads per query.
const SubscribePage = 512

// Subscribers are the wake-up channels of a log's subscribers.
type Subscribers struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// Add registers wake to be woken by Notify.
func (s *Subscribers) Add(wake chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs == nil {
		s.subs = make(map[chan struct{}]struct{})
	}
	s.subs[wake] = struct{}{}
}

// Remove unregisters wake.
func (s *Subscribers) Remove(wake chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, wake)
}

// Notify wakes every subscriber; a subscriber already woken and not yet
// reading keeps its single pending wake-up.
func (s *Subscribers) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Follower is the driver-independent half of an audit.Store's Subscribe:
// the store is the source of truth, a wake-up only makes the subscriber
// read what follows the last seq it sent.
type Follower struct {
	Search  func(ctx context.Context, q audit.Query) ([]audit.Event, error)
	Wake    <-chan struct{} // a commit happened
	Closing <-chan struct{} // closed when the backend closes
	Closed  func() bool
	// ReadFailed is told of a failed read (failures in a row, counting
	// this one) unless ctx ended or the backend closed; false ends the
	// subscription, true retries after the next wake-up.
	ReadFailed func(last int64, failures int, err error) bool
	// Poll, if set, returns a channel that wakes the subscriber without a
	// commit (one another instance made).
	Poll func() <-chan time.Time
}

// Follow sends to out, in seq order, every event with Seq > afterSeq: those
// stored, then new ones as they commit. It returns when ctx ends, the
// backend closes or ReadFailed ends the subscription.
func (f Follower) Follow(ctx context.Context, afterSeq int64, out chan<- audit.Event) {
	last := max(afterSeq, 0)
	failures := 0
	for {
		page, err := f.Search(ctx, audit.Query{AfterSeq: last, Limit: SubscribePage})
		if err != nil {
			if ctx.Err() != nil || f.Closed() {
				return
			}
			failures++
			if !f.ReadFailed(last, failures, err) {
				return
			}
		} else {
			failures = 0
		}
		for _, ev := range page {
			select {
			case out <- ev:
				last = ev.Seq
			case <-ctx.Done():
				return
			case <-f.Closing:
				return
			}
		}
		if len(page) == SubscribePage {
			continue // more backlog
		}
		var poll <-chan time.Time
		if f.Poll != nil {
			poll = f.Poll()
		}
		select {
		case <-f.Wake:
		case <-ctx.Done():
			return
		case <-f.Closing:
			return
		case <-poll:
		}
	}
}
