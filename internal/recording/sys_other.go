//go:build !linux

package recording

import (
	"errors"
	"os"
)

// dropCache is a no-op where posix_fadvise is not used.
func dropCache(*os.File, int64) {}

// lowerThreadPriority is not supported here: recording work keeps the
// process's priority.
func lowerThreadPriority() error { return errors.ErrUnsupported }

// onMainThread is false here: no thread's priority is ever lowered.
func onMainThread() bool { return false }

// lockFile is a no-op here: several processes sharing one store directory
// need Linux (flock); one process is serialised by its own mutexes.
func lockFile(*os.File) error { return nil }

// fileStamp identifies a version of a file written by replacing it.
type fileStamp struct {
	size, mtime int64
}

func stampOf(fi os.FileInfo) fileStamp {
	return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
