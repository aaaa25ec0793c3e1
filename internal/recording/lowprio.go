package recording

import (
	"log/slog"
	"runtime"
	"sync"
)

// lowPriority runs the CPU-heavy part of recording (asciicast encoding,
// SHA-256 and the copy into the page cache) on a few OS threads at the
// lowest CPU priority, so that a session's own work (its PTY, its SSH
// channel, the proxy) always goes first and recording uses what CPU is
// left (BenchmarkRecording measures a bulk session with recording on
// against off; bench/run.sh prints the ratio). Work on these threads yields
// its P between short steps (SpoolRecording.writeSteps), else a thread the
// OS set aside would hold one of the runtime's Ps from the sessions.
//
// It never starves a recording: a recording whose queue backs up flushes
// at normal priority instead (see SpoolRecording.flushLoop), so a saturated
// machine slows recording to a fair share, not to nothing. fsync, which
// costs waiting rather than CPU, stays on the recording's own goroutine.
type lowPriority struct {
	work chan func()
	wg   sync.WaitGroup
}

var (
	sharedOnce sync.Once
	shared     *lowPriority
)

// sharedLowPriority returns the process's pool, started on first use with
// one worker per usable CPU. Every spool in the process shares it (a test
// or benchmark may run a thousand nodes in one process), and it lives as
// long as the process.
func sharedLowPriority(log *slog.Logger) *lowPriority {
	sharedOnce.Do(func() { shared = newLowPriority(runtime.GOMAXPROCS(0), log) })
	return shared
}

// newLowPriority starts n workers. If the platform or the process cannot
// lower a thread's priority, it returns nil: callers then do the work
// themselves, at normal priority.
func newLowPriority(n int, log *slog.Logger) *lowPriority {
	p := &lowPriority{work: make(chan func())}
	started := make(chan error, n)
	for range n {
		p.wg.Go(func() { p.worker(started) })
	}
	var failed error
	for range n {
		if err := <-started; err != nil {
			failed = err
		}
	}
	if failed != nil {
		p.stop()
		log.Info("recording work runs at normal CPU priority: cannot lower a thread's priority", slog.Any("err", failed))
		return nil
	}
	return p
}

// worker runs work on its own low-priority thread until the pool stops.
func (p *lowPriority) worker(started chan<- error) {
	// Never unlocked once lowered: when the worker returns, Go ends the
	// thread rather than hand a low-priority thread to other goroutines.
	runtime.LockOSThread()
	if onMainThread() {
		// Go cannot end the main thread: it would park it for good, still
		// at low priority, and the process's nice value (what ps shows) is
		// the main thread's. Hold the main thread while a replacement
		// worker locks another one, then give it back unchanged.
		locked := make(chan struct{})
		p.wg.Go(func() {
			runtime.LockOSThread()
			close(locked)
			p.serve(started)
		})
		<-locked
		runtime.UnlockOSThread()
		return
	}
	p.serve(started)
}

// PoolFunction is the function each low-priority worker runs for as long as
// the process lives: leak checks (goleak.IgnoreAnyFunction) skip it.
const PoolFunction = "github.com/warden-sh/warden/internal/recording.(*lowPriority).serve"

// serve lowers the priority of the thread its goroutine is locked to and
// runs work there until the pool stops.
func (p *lowPriority) serve(started chan<- error) {
	err := lowerThreadPriority()
	started <- err
	if err != nil {
		// The thread's priority is unchanged: it may serve others.
		runtime.UnlockOSThread()
		return
	}
	for f := range p.work {
		f()
	}
}

// run runs f on a low-priority thread and returns when f has returned.
func (p *lowPriority) run(f func()) {
	done := make(chan struct{})
	p.work <- func() {
		defer close(done)
		f()
	}
	<-done
}

// stop ends the workers once no run is in progress or to come.
func (p *lowPriority) stop() {
	close(p.work)
	p.wg.Wait()
}
