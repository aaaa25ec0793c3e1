package identity

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

type testClock struct{ t time.Time }

func (c *testClock) now() time.Time          { return c.t }
func (c *testClock) advance(d time.Duration) { c.t = c.t.Add(d) }

var testLimit = ThrottleLimit{Burst: 3, Every: time.Minute, MaxWait: 5 * time.Minute}

func fail(t *testing.T, th *Throttle, keys ...ThrottleKey) {
	t.Helper()
	a, err := th.Begin(keys...)
	if err != nil {
		t.Fatalf("Begin refused: %v", err)
	}
	a.Fail()
}

func refused(t *testing.T, th *Throttle, keys ...ThrottleKey) *ThrottledError {
	t.Helper()
	a, err := th.Begin(keys...)
	var te *ThrottledError
	if !errors.As(err, &te) || !errors.Is(err, ErrThrottled) {
		a.Abandon()
		t.Fatalf("Begin = %v, want a ThrottledError", err)
	}
	return te
}

func TestThrottleCountsFailuresAndBacksOff(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(clk.now, 0)
	k := ThrottleKey{Name: "src:192.0.2.1", Limit: testLimit}
	// Successes are free: any number of them.
	for range 50 {
		a, err := th.Begin(k)
		if err != nil {
			t.Fatal(err)
		}
		a.Succeed()
	}
	for range testLimit.Burst {
		fail(t, th, k)
	}
	te := refused(t, th, k)
	if !te.First || te.RetryAfter != 2*time.Minute || te.Key != k.Name {
		t.Fatalf("first refusal %+v, want First, 2m (1m to the next token, +1m for asking)", te)
	}
	if msg := te.Error(); msg != "too many failed attempts from this address; try again in 2m0s" {
		t.Fatalf("message %q", msg)
	}
	// Each further refusal pushes the wait out by Every, up to MaxWait.
	var waits []time.Duration
	for range 6 {
		te = refused(t, th, k)
		if te.First {
			t.Fatal("a later refusal of the same burst is marked First")
		}
		waits = append(waits, te.RetryAfter)
	}
	if got, want := fmt.Sprint(waits), "[3m0s 4m0s 5m0s 5m0s 5m0s 5m0s]"; got != want {
		t.Fatalf("waits %s, want %s", got, want)
	}
	// After the wait one attempt is allowed again (and a new burst of
	// refusals is audited again).
	clk.advance(5 * time.Minute)
	fail(t, th, k)
	if te = refused(t, th, k); !te.First {
		t.Fatal("the refusal after an allowed attempt is not First")
	}
	// Fully recovered keys are forgotten.
	clk.advance(time.Hour)
	a, err := th.Begin(k)
	if err != nil {
		t.Fatal(err)
	}
	a.Abandon()
	if n := th.Len(); n != 0 {
		t.Fatalf("%d keys remembered after recovery", n)
	}
}

func TestThrottleClearOnSuccessOnlyForItsKey(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(clk.now, 0)
	src := ThrottleKey{Name: "src", Limit: ThrottleLimit{Burst: 5, Every: time.Minute, MaxWait: time.Hour}}
	pair := ThrottleKey{Name: "src alice", Limit: testLimit, ClearOnSuccess: true}
	for range 2 {
		fail(t, th, src, pair)
	}
	a, err := th.Begin(src, pair)
	if err != nil {
		t.Fatal(err)
	}
	a.Succeed()
	// The pair starts again from a full bucket; the source does not: its
	// 3 remaining failures are all that is left.
	for range 3 {
		fail(t, th, src, pair)
	}
	if te := refused(t, th, src, pair); te.Key != "src" {
		t.Fatalf("refused by %q, want the source key", te.Key)
	}
}

func TestThrottleCountsAttemptsInFlight(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(clk.now, 0)
	k := ThrottleKey{Name: "k", Limit: testLimit}
	var open []*Attempt
	for range testLimit.Burst {
		a, err := th.Begin(k)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, a)
	}
	// Refused for being busy: retry in a moment, at no cost.
	if te := refused(t, th, k); te.RetryAfter != time.Second {
		t.Fatalf("busy refusal: retry after %s, want 1s", te.RetryAfter)
	}
	// Abandoned attempts do not count: their places are free again.
	for _, a := range open {
		a.Abandon()
		a.Fail() // no effect: already ended
	}
	for range testLimit.Burst {
		fail(t, th, k)
	}
	if te := refused(t, th, k); te.RetryAfter != 2*time.Minute {
		t.Fatalf("refusal after the allowance: retry after %s, want 2m", te.RetryAfter)
	}
}

func TestThrottleBoundsItsMemory(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(clk.now, 100)
	first := ThrottleKey{Name: "first", Limit: testLimit}
	for range testLimit.Burst {
		fail(t, th, first)
	}
	for i := range 1000 {
		clk.advance(time.Millisecond)
		fail(t, th, ThrottleKey{Name: fmt.Sprint("k", i), Limit: testLimit})
		if n := th.Len(); n > 100 {
			t.Fatalf("%d keys kept, limit 100", n)
		}
	}
	// The least recently used key went first.
	a, err := th.Begin(first)
	if err != nil {
		t.Fatalf("oldest key still remembered: %v", err)
	}
	a.Abandon()
}
