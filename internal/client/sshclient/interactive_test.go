//go:build linux && integration

package sshclient

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/warden-sh/warden/internal/patience"
	"golang.org/x/sys/unix"
)

func canonical(t *testing.T, fd int) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		t.Fatalf("get termios: %v", err)
	}
	return tio.Lflag&unix.ICANON != 0
}

// TestRunInteractiveTerminal drives Run through a local pseudo-terminal, as
// a user at a real terminal would: raw mode while the session runs and
// restored after, the terminal's size sent with the PTY request, and a
// resize (SIGWINCH) forwarded as window-change.
func TestRunInteractiveTerminal(t *testing.T) {
	// Not parallel: it sends SIGWINCH to the whole test process.
	c := newCluster(t)
	client := c.dial(t)

	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	readerDone := make(chan struct{})
	t.Cleanup(func() {
		// Run's stdin copiers may still sit in a read of the tty (a blocking
		// fd cannot be interrupted); a keystroke ends it, as the next key a
		// user types would. Closing the tty then ends the reader of ptmx.
		// A blocking fd is only released when its read returns, so keep
		// typing newlines until every reader of the tty has let go (under
		// load one newline can arrive before the terminal left raw mode).
		tty.Close()
		deadline := time.After(patience.Left(t))
		for done := false; !done; {
			_, _ = ptmx.Write([]byte("\n"))
			select {
			case <-readerDone:
				done = true
			case <-time.After(100 * time.Millisecond):
			case <-deadline:
				t.Error("pty readers still blocked long after the test")
				done = true
			}
		}
		ptmx.Close()
	})
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	if !canonical(t, int(tty.Fd())) {
		t.Fatal("fresh pty is not in canonical mode")
	}

	var mu sync.Mutex
	var screen bytes.Buffer
	go func() {
		defer close(readerDone)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitFor := func(s string) {
		t.Helper()
		deadline := patience.Deadline(t)
		for {
			mu.Lock()
			got := screen.String()
			mu.Unlock()
			if strings.Contains(got, s) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("terminal never showed %q; it shows %q", s, got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := Run(context.Background(), client, RunOptions{
			Command: `echo "start:$(stty size)"; read line; ` +
				`until [ "$(stty size)" = "50 120" ]; do sleep 0.05; done; ` +
				`echo "size:$(stty size) got:$line"; exit 5`,
			TTY:    true,
			Stdin:  tty,
			Stdout: tty,
			Stderr: tty,
		})
		done <- result{code, err}
	}()

	waitFor("start:40 100")
	if canonical(t, int(tty.Fd())) {
		t.Error("local terminal is not in raw mode during the session")
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 50, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGWINCH); err != nil {
		t.Fatal(err)
	}
	if _, err := ptmx.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	waitFor("size:50 120 got:hello")

	select {
	case r := <-done:
		if r.err != nil || r.code != 5 {
			t.Errorf("Run = %d, %v; want 5, nil", r.code, r.err)
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("Run did not return after the remote shell exited")
	}
	if !canonical(t, int(tty.Fd())) {
		t.Error("local terminal mode not restored after the session")
	}

	// Cancelling (the CLI cancels on SIGINT/SIGTERM/SIGHUP) also restores.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		code, err := Run(ctx, client, RunOptions{Command: "echo sleeping; sleep infinity", TTY: true, Stdin: tty, Stdout: tty})
		done <- result{code, err}
	}()
	waitFor("sleeping")
	if canonical(t, int(tty.Fd())) {
		t.Error("local terminal is not in raw mode during the second session")
	}
	cancel()
	select {
	case r := <-done:
		if r.code != ExitConnectionError || r.err != context.Canceled {
			t.Errorf("cancelled Run = %d, %v; want %d, context.Canceled", r.code, r.err, ExitConnectionError)
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("Run did not return after cancel")
	}
	if !canonical(t, int(tty.Fd())) {
		t.Error("local terminal mode not restored after a cancelled session")
	}
}
