package node

import (
	"runtime"
	"sync"
)

// behindQueue runs jobs one at a time on a goroutine of its own, each one
// only after the goroutines that were ready to run before it: the job's
// goroutine yields (runtime.Gosched) before every job, which puts it at the
// back of the runtime's global run queue. Work queued here therefore waits
// for work already under way, without ever starving: Go's scheduler takes
// from the global run queue at regular intervals even on a busy process,
// and at once on an idle one.
//
// (Not the recording's low-priority OS threads: a freeze is one short
// system call, and handing the runtime's P to a thread the OS has set
// aside would hold other goroutines up, not the freeze.)
//
// It is for a revoked session's freeze: a node ending many sessions at once
// (a lock on a role, a node with hundreds of users) cuts every connection
// first, and its processes stop a moment later, on otherwise idle CPU.
type behindQueue struct {
	mu      sync.Mutex
	jobs    []func()
	running bool // the goroutine runs; it ends when the queue is empty
}

// revokedFreezes is the process's queue of freezes. One per process, not
// per node Server: a benchmark or a test runs many nodes in one process,
// and their freezes must wait behind all of their cuts.
var revokedFreezes behindQueue

// add queues f.
func (q *behindQueue) add(f func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.jobs = append(q.jobs, f)
	if !q.running {
		q.running = true
		go q.run()
	}
}

func (q *behindQueue) run() {
	for {
		runtime.Gosched()
		q.mu.Lock()
		if len(q.jobs) == 0 {
			q.jobs, q.running = nil, false
			q.mu.Unlock()
			return
		}
		f := q.jobs[0]
		q.jobs[0] = nil
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		f()
	}
}
