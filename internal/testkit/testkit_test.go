package testkit

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTB runs out of patience soon and records a Fatalf instead of failing
// the real test.
type fakeTB struct {
	testing.TB
	deadline time.Time
	fatal    string
}

func (f *fakeTB) Helper()                     {}
func (f *fakeTB) Deadline() (time.Time, bool) { return f.deadline, true }
func (f *fakeTB) Fatalf(format string, a ...any) {
	f.fatal = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

// run calls fn with a fakeTB whose patience ends after d, in a goroutine
// of its own (Fatalf ends it), and returns what it failed with.
func run(d time.Duration, fn func(tb testing.TB)) string {
	f := &fakeTB{deadline: time.Now().Add(d)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.fatal
}

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	WaitFor(t, "the third call", func() bool { return calls.Add(1) == 3 })
	if n := calls.Load(); n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

type counter struct{ n atomic.Int32 }

func (c *counter) String() string { return strconv.Itoa(int(c.n.Load())) }

func TestWaitForSaysWhatItWaitedFor(t *testing.T) {
	got := run(100*time.Millisecond, func(tb testing.TB) {
		WaitFor(tb, "a 100% sure thing", func() bool { return false })
	})
	if want := "timed out waiting for a 100% sure thing"; got != want {
		t.Errorf("without args: %q, want %q", got, want)
	}
	// With args, what is a format applied on failure: a Stringer shows
	// the state then, not when the wait began.
	var c counter
	got = run(100*time.Millisecond, func(tb testing.TB) {
		WaitFor(tb, "the count to reach -1 (at %s)", func() bool { c.n.Add(1); return false }, &c)
	})
	if want := fmt.Sprintf("timed out waiting for the count to reach -1 (at %d)", c.n.Load()); got != want || c.n.Load() < 2 {
		t.Errorf("with args: %q, want %q", got, want)
	}
}

func TestFreePortIsFree(t *testing.T) {
	p := FreePort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("FreePort %d: %v", p, err)
	}
	ln.Close()
}

func TestMachineBusy(t *testing.T) {
	a := MachineBusy()
	if a <= 0 {
		t.Fatalf("MachineBusy = %v: /proc/stat unread or malformed", a)
	}
	// Busy time only grows; spin until a tick passes on this CPU.
	for b := MachineBusy(); b <= a; b = MachineBusy() {
		if b < a {
			t.Fatalf("MachineBusy went back: %v after %v", b, a)
		}
	}
}
