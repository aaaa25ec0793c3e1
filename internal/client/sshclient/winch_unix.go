//go:build unix

package sshclient

import (
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/term"
)

// watchWindowSize calls resize with the terminal's new size on every
// SIGWINCH until the returned func is called.
func watchWindowSize(fd int, resize func(width, height int)) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGWINCH)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		lastW, lastH, _ := term.GetSize(fd)
		for {
			select {
			case <-done:
				return
			case <-sigs:
				w, h, err := term.GetSize(fd)
				if err != nil || (w == lastW && h == lastH) {
					continue
				}
				lastW, lastH = w, h
				resize(w, h)
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
		wg.Wait()
	}
}
