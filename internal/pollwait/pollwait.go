// Package pollwait waits for a file descriptor to become readable in the
// Go runtime's poller, without reading from it and without holding an OS
// thread: for a process's exit (a pidfd), or for data on an idle
// connection before a buffer is taken for it.
package pollwait

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Readable blocks until rc's descriptor polls readable (data, end of
// input, an error, or a process's exit for a pidfd). rc must be in the
// runtime's poller (a net.Conn's, or an os.File opened non-blocking).
func Readable(rc syscall.RawConn) error {
	return rc.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(pfd, 0)
			if err != unix.EINTR {
				return n > 0 || err != nil
			}
		}
	})
}
