// Package patience bounds how long a test waits for something that must
// happen (an event, a condition, a process's end). The bound is not a
// speed requirement: it is the test binary's own -timeout, less a margin
// in which the test can still say what it was waiting for. A loaded
// machine makes a test slower, never failed.
package patience

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// unbounded is the wait when the test binary has no -timeout (or tb is a
// benchmark, or nil): go test's default -timeout.
const unbounded = 10 * time.Minute

// Deadline is when a test waiting for something gives up: 95% of the way
// from now to go test's -timeout, so that the failure names what never
// happened instead of go test's panic.
func Deadline(tb testing.TB) time.Time {
	if t, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := t.Deadline(); ok {
			return d.Add(-time.Until(d) / 20)
		}
	}
	return time.Now().Add(unbounded)
}

// Left is the time from now to Deadline(tb).
func Left(tb testing.TB) time.Duration { return time.Until(Deadline(tb)) }

// Context is done at Deadline(tb) or when the test ends.
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), Deadline(tb))
	tb.Cleanup(cancel)
	return ctx
}

// Retry calls check until it returns nil and returns its last error once
// Deadline(tb) passes (tb may be nil outside a test, as in TestMain). It
// backs off from 1 ms to 100 ms between calls. It is for a state that
// settles with no event to wait on: goroutines that end just after Close
// returned, descriptors that a finalizer closes.
func Retry(tb testing.TB, check func() error) error {
	deadline := Deadline(tb)
	pause := time.Millisecond
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// LeakCheck is for TestMain, with m.Run's exit code: after passing tests,
// no goroutine they started may be left (goleak, with opts). Goroutines
// that end a moment after the last test returned are waited for (Retry),
// not reported. It returns the exit code.
func LeakCheck(code int, opts ...goleak.Option) int {
	if code != 0 {
		return code
	}
	if err := Retry(nil, func() error { return goleak.Find(opts...) }); err != nil {
		fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
		return 1
	}
	return 0
}
