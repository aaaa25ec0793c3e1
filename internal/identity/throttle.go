package identity

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ErrThrottled is wrapped by ThrottledError: too many failed attempts came
// from one source (or one source for one account).
var ErrThrottled = errors.New("too many failed attempts")

// ThrottledError refuses an attempt made too soon after repeated failures.
// Its message is the same whichever key refused it, and whether or not the
// account exists.
type ThrottledError struct {
	// RetryAfter is when the next attempt may succeed, rounded up to whole
	// seconds.
	RetryAfter time.Duration
	// First is set on the first refusal after the key last had an attempt
	// allowed: callers audit that one, not every refused request of a burst.
	First bool
	// Key names the key that refused (for the audit log, not the client).
	Key string
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v from this address; try again in %s", ErrThrottled, e.RetryAfter)
}

func (e *ThrottledError) Unwrap() error { return ErrThrottled }

// ThrottleLimit is a token bucket of failures: Burst failures are free,
// then one more each Every. An attempt refused while the bucket is empty
// adds another Every to the wait (so a client that keeps hammering waits
// longer), up to MaxWait.
type ThrottleLimit struct {
	Burst   int
	Every   time.Duration
	MaxWait time.Duration
}

// ThrottleKey is one key an attempt is counted under.
type ThrottleKey struct {
	Name  string
	Limit ThrottleLimit
	// ClearOnSuccess forgets the key's failures when an attempt succeeds:
	// for a key that names the account, whose password the successful
	// client knows. A key for a source alone must not be cleared, or one
	// valid account would reset the throttle for guesses at every other.
	ClearOnSuccess bool
}

// Throttle slows down credential guessing without locking anyone out: it
// counts failed attempts per key (callers use a source address, and the
// pair of source address and account), so a flood from one address slows
// that address only, and no one can lock an account for everyone else.
// Successes are not counted; attempts still in flight count against the
// bucket, so a burst of concurrent attempts cannot all pass (those refused
// only for that are told to retry in a second, and add no wait). Keys
// whose bucket is full again are forgotten, and at most maxKeys are kept.
type Throttle struct {
	now     func() time.Time
	maxKeys int
	mu      sync.Mutex
	keys    map[string]*throttleState
}

type throttleState struct {
	lim      *rate.Limiter
	limit    ThrottleLimit
	inflight int
	last     time.Time
	// refusing is set from a key's first refused attempt until one is
	// allowed again.
	refusing bool
}

// NewThrottle returns a throttle on the clock now (time.Now if nil) that
// keeps at most maxKeys keys (65,536 if not positive).
func NewThrottle(now func() time.Time, maxKeys int) *Throttle {
	if now == nil {
		now = time.Now
	}
	if maxKeys <= 0 {
		maxKeys = 1 << 16
	}
	return &Throttle{now: now, maxKeys: maxKeys, keys: map[string]*throttleState{}}
}

// Attempt is an attempt Begin allowed. Exactly one of Fail, Succeed or
// Abandon ends it; later calls do nothing.
type Attempt struct {
	t    *Throttle
	keys []ThrottleKey
	done bool
}

// Begin starts an attempt counted under every key, or refuses it with a
// *ThrottledError if any key has no failure left in its bucket.
func (t *Throttle) Begin(keys ...ThrottleKey) (*Attempt, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var refused *ThrottledError
	for _, k := range keys {
		st := t.keys[k.Name]
		if st == nil {
			continue // a key never seen, or forgotten: a full bucket
		}
		tokens := st.lim.TokensAt(now)
		if tokens-float64(st.inflight) >= 1 {
			continue
		}
		var wait time.Duration
		if tokens >= 1 {
			// Only busy: attempts in flight hold what is left of the
			// bucket, and they end within moments.
			wait = time.Second
		} else {
			every := st.limit.Every
			wait = time.Duration((1 - tokens) * float64(every))
			if wait+every <= st.limit.MaxWait {
				st.lim.ReserveN(now, 1) // backoff: hammering waits longer
				wait += every
			}
		}
		st.last = now
		first := !st.refusing
		st.refusing = true
		if refused == nil || wait > refused.RetryAfter {
			refused = &ThrottledError{RetryAfter: wait, Key: k.Name}
		}
		refused.First = refused.First || first
	}
	if refused != nil {
		refused.RetryAfter = time.Duration(math.Ceil(refused.RetryAfter.Seconds())) * time.Second
		return nil, refused
	}
	for _, k := range keys {
		st := t.keys[k.Name]
		if st == nil {
			t.makeRoom(now)
			st = &throttleState{lim: rate.NewLimiter(rate.Every(k.Limit.Every), k.Limit.Burst), limit: k.Limit}
			t.keys[k.Name] = st
		}
		st.inflight++
		st.last = now
		st.refusing = false
	}
	return &Attempt{t: t, keys: keys}, nil
}

// Fail ends the attempt as a failure: it takes a token from every key.
func (a *Attempt) Fail() {
	a.end(func(st *throttleState, _ ThrottleKey, now time.Time) { st.lim.ReserveN(now, 1) })
}

// Succeed ends the attempt as a success: keys with ClearOnSuccess forget
// their failures.
func (a *Attempt) Succeed() {
	a.end(func(st *throttleState, k ThrottleKey, _ time.Time) {
		if k.ClearOnSuccess {
			st.lim = rate.NewLimiter(rate.Every(k.Limit.Every), k.Limit.Burst)
		}
	})
}

// Abandon ends the attempt without counting it: it failed for a reason
// that says nothing about the credentials (a storage error).
func (a *Attempt) Abandon() { a.end(func(*throttleState, ThrottleKey, time.Time) {}) }

func (a *Attempt) end(f func(*throttleState, ThrottleKey, time.Time)) {
	if a == nil || a.done {
		return
	}
	a.done = true
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, k := range a.keys {
		st := t.keys[k.Name]
		if st == nil {
			continue
		}
		st.inflight--
		st.last = now
		f(st, k, now)
		if st.inflight == 0 && st.lim.TokensAt(now) >= float64(k.Limit.Burst) {
			delete(t.keys, k.Name) // nothing to remember
		}
	}
}

// makeRoom drops keys whose buckets are full again when the table is full;
// if that is not enough (a flood from very many sources), the least
// recently used idle keys go, down to nine tenths of the limit. t.mu is
// held.
func (t *Throttle) makeRoom(now time.Time) {
	if len(t.keys) < t.maxKeys {
		return
	}
	var idle []string
	for name, st := range t.keys {
		if st.inflight > 0 {
			continue
		}
		if st.lim.TokensAt(now) >= float64(st.limit.Burst) {
			delete(t.keys, name)
			continue
		}
		idle = append(idle, name)
	}
	target := t.maxKeys * 9 / 10
	if len(t.keys) <= target {
		return
	}
	sort.Slice(idle, func(i, j int) bool { return t.keys[idle[i]].last.Before(t.keys[idle[j]].last) })
	for _, name := range idle {
		if len(t.keys) <= target {
			return
		}
		delete(t.keys, name)
	}
}

// Len is the number of keys remembered (for tests and metrics).
func (t *Throttle) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}
