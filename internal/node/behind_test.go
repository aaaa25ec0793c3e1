package node

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/testkit"
)

func TestBehindQueueRunsEveryJobInOrder(t *testing.T) {
	var q behindQueue
	var mu sync.Mutex
	var got []int
	const n = 200
	for i := range n {
		q.add(func() {
			mu.Lock()
			got = append(got, i)
			mu.Unlock()
		})
	}
	testkit.WaitFor(t, "every job to run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	})
	for i, v := range got {
		if v != i {
			t.Fatalf("job %d ran as number %d: %v", v, i, got)
		}
	}
	// The goroutine ends with the queue empty, and a later job starts it
	// again.
	testkit.WaitFor(t, "the queue's goroutine to end", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return !q.running
	})
	done := make(chan struct{})
	q.add(func() { close(done) })
	<-done
}

// A busy process still runs the queued work: the queue yields, it does not
// wait for idle CPU.
func TestBehindQueueRunsOnABusyProcess(t *testing.T) {
	var stop atomic.Bool
	var busy sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		busy.Go(func() {
			for !stop.Load() {
				runtime.Gosched()
			}
		})
	}
	defer busy.Wait()
	defer stop.Store(true)
	var q behindQueue
	done := make(chan struct{})
	q.add(func() { close(done) })
	select {
	case <-done:
	case <-time.After(patience.Left(t)):
		t.Fatal("the queued job did not run while other goroutines were busy")
	}
}
