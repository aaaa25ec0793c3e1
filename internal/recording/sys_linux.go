package recording

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// dropCache tells the kernel that f's first n bytes, already durable, will
// not be read again soon, so that their page cache is freed now. Recordings
// are written once and read rarely: kept cached they would push out what the
// machine does use (auth's database, the audit index) and, on a VM, make
// every recorded byte cost a fresh page of guest memory.
//
// The range always starts at 0: the kernel drops only whole folios, and a
// large folio straddling an earlier call's end would otherwise never be
// dropped. Skipping what is already gone is cheap. Best effort: a failure
// only leaves pages cached.
func dropCache(f *os.File, n int64) {
	if n > 0 {
		_ = unix.Fadvise(int(f.Fd()), 0, n, unix.FADV_DONTNEED)
	}
}

// recordingNice is the nice value of the threads that encode and write
// recordings: the lowest CPU priority short of SCHED_IDLE, which could
// starve them (and the Go runtime, which stops every thread for a garbage
// collection) on a saturated machine.
const recordingNice = 19

// lowerThreadPriority gives the calling OS thread recordingNice. Linux
// applies nice per thread, so this affects no other thread; the caller
// keeps its goroutine locked to the thread for the thread's whole life.
// Lowering one's own priority needs no privilege.
func lowerThreadPriority() error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), recordingNice)
}

// onMainThread reports whether the calling goroutine runs on the process's
// main thread (whose thread id is the process id).
func onMainThread() bool { return unix.Gettid() == unix.Getpid() }

// lockFile takes an exclusive flock on f (released when f is closed).
func lockFile(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}

// fileStamp identifies a version of a file written by replacing it.
type fileStamp struct {
	ino, size, mtime int64
}

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = int64(sys.Ino)
	}
	return st
}
