package recording

import (
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
)

// lowPriority runs the CPU-heavy part of recording (asciicast encoding,
// SHA-256 and the copy into the page cache) on a few OS threads at the
// lowest CPU priority, so that a session's own work (its PTY, its SSH
// channel, the proxy) always goes first and recording uses what CPU is
// left. On a busy 2-core machine this is the difference between recording
// costing ~12% of a bulk session's throughput and costing nothing
// measurable (bench: BenchmarkRecording).
//
// It never starves a recording: a recording whose queue backs up flushes
// at normal priority instead (see SpoolRecording.flushLoop), so a saturated
// machine slows recording to a fair share, not to nothing. fsync, which
// costs waiting rather than CPU, stays on the recording's own goroutine.
type lowPriority struct {
	work chan func()
	wg   sync.WaitGroup
	runs atomic.Int64 // for tests
}

// newLowPriority starts n workers. If the platform or the process cannot
// lower a thread's priority, it returns nil: callers then do the work
// themselves, at normal priority.
func newLowPriority(n int, log *slog.Logger) *lowPriority {
	p := &lowPriority{work: make(chan func())}
	started := make(chan error, n)
	for range n {
		p.wg.Go(func() {
			// Never unlocked: when the worker returns, Go ends the thread
			// rather than hand a low-priority thread to other goroutines.
			runtime.LockOSThread()
			err := lowerThreadPriority()
			started <- err
			if err != nil {
				return
			}
			for f := range p.work {
				f()
			}
		})
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

// run runs f on a low-priority thread and returns when f has returned.
func (p *lowPriority) run(f func()) {
	p.runs.Add(1)
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
