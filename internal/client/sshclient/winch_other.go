//go:build !unix

package sshclient

// watchWindowSize is a no-op where there is no SIGWINCH; the PTY keeps the
// size it started with.
func watchWindowSize(fd int, resize func(width, height int)) (stop func()) {
	return func() {}
}
