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
