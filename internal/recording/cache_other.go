//go:build !linux

package recording

import "os"

// dropCache is a no-op where posix_fadvise is not used.
func dropCache(*os.File, int64) {}
