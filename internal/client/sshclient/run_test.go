//go:build integration

package sshclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestRun(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	client := c.dial(t)

	tests := []struct {
		name       string
		opt        RunOptions
		wantCode   int
		wantStdout string // exact, unless wantPrefix
		wantPrefix bool
		wantStderr string
	}{
		{name: "echo", opt: RunOptions{Command: "echo hi"}, wantStdout: "hi\n"},
		{name: "exit status passes through", opt: RunOptions{Command: "exit 42"}, wantCode: 42},
		{name: "exit 255", opt: RunOptions{Command: "exit 255"}, wantCode: 255},
		{name: "stderr", opt: RunOptions{Command: "echo oops >&2; exit 3"}, wantCode: 3, wantStderr: "oops\n"},
		{name: "stdin piped", opt: RunOptions{Command: "cat", Stdin: strings.NewReader("hello\nworld\n")},
			wantStdout: "hello\nworld\n"},
		{name: "large stdin", opt: RunOptions{Command: "wc -c", Stdin: bytes.NewReader(make([]byte, 1<<20))},
			wantStdout: "1048576\n"},
		{name: "env accepted and refused", opt: RunOptions{
			Command: `echo "$WARDEN_TEST_A-$WARDEN_TEST_B-$NOT_ACCEPTED"`,
			Env:     map[string]string{"WARDEN_TEST_A": "a", "WARDEN_TEST_B": "b c", "NOT_ACCEPTED": "x"},
		}, wantStdout: "a-b c-\n"},
		{name: "killed by a signal", opt: RunOptions{Command: "kill -TERM $$"}, wantCode: 128 + 15},
		{name: "killed by SIGKILL", opt: RunOptions{Command: "kill -KILL $$"}, wantCode: 128 + 9},
		{name: "tty", opt: RunOptions{Command: "tty", TTY: true}, wantStdout: "/dev/pts/", wantPrefix: true},
		{name: "no tty without request", opt: RunOptions{Command: "tty || true"}, wantStdout: "not a tty\n"},
		{name: "tty default size", opt: RunOptions{Command: "stty size", TTY: true}, wantStdout: "24 80\r\n"},
		{name: "tty exit status", opt: RunOptions{Command: "exit 7", TTY: true}, wantCode: 7},
		{name: "login shell reads stdin", opt: RunOptions{Stdin: strings.NewReader("echo from-shell\nexit 9\n")},
			wantCode: 9, wantStdout: "from-shell\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			opt := tt.opt
			opt.Stdout, opt.Stderr = &stdout, &stderr
			code, err := Run(context.Background(), client, opt)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stdout %q, stderr %q)", code, tt.wantCode, stdout.String(), stderr.String())
			}
			got := stdout.String()
			if tt.wantPrefix {
				if !strings.HasPrefix(got, tt.wantStdout) {
					t.Errorf("stdout = %q, want prefix %q", got, tt.wantStdout)
				}
			} else if got != tt.wantStdout {
				t.Errorf("stdout = %q, want %q", got, tt.wantStdout)
			}
			if got := stderr.String(); got != tt.wantStderr {
				t.Errorf("stderr = %q, want %q", got, tt.wantStderr)
			}
		})
	}
}

func TestRunTTYUsesTERM(t *testing.T) {
	// Not parallel: it sets an environment variable.
	c := newCluster(t)
	client := c.dial(t)
	t.Setenv("TERM", "vt220")
	var out bytes.Buffer
	code, err := Run(context.Background(), client, RunOptions{Command: "echo $TERM", TTY: true, Stdout: &out})
	if err != nil || code != 0 {
		t.Fatalf("Run = %d, %v", code, err)
	}
	if got := out.String(); got != "vt220\r\n" {
		t.Errorf("remote TERM = %q, want %q", got, "vt220\r\n")
	}
}

func TestRunContextCancel(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	client := c.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// The command never ends by itself: only the deadline can end Run.
	code, err := Run(ctx, client, RunOptions{Command: "sleep infinity"})
	if code != ExitConnectionError || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %d, %v; want %d, context.DeadlineExceeded", code, err, ExitConnectionError)
	}
	// The connection is still usable for the next command.
	if code, err := Run(context.Background(), client, RunOptions{Command: "true"}); code != 0 || err != nil {
		t.Errorf("Run after cancel = %d, %v", code, err)
	}
}

func TestRunClosedConnection(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	client := c.dial(t)
	client.Close()
	code, err := Run(context.Background(), client, RunOptions{Command: "true"})
	if code != ExitConnectionError || err == nil {
		t.Fatalf("Run on a closed client = %d, %v; want %d and an error", code, err, ExitConnectionError)
	}
	if code, err := Run(context.Background(), nil, RunOptions{}); code != ExitConnectionError || err == nil {
		t.Fatalf("Run(nil client) = %d, %v", code, err)
	}
}

func TestExitStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantErr  bool
	}{
		{"nil", nil, 0, false},
		{"missing", &ssh.ExitMissingError{}, ExitConnectionError, true},
		{"io error", io.ErrUnexpectedEOF, ExitConnectionError, true},
	}
	for _, tt := range tests {
		code, err := exitStatus(tt.err)
		if code != tt.wantCode || (err != nil) != tt.wantErr {
			t.Errorf("%s: exitStatus = %d, %v; want %d, error %v", tt.name, code, err, tt.wantCode, tt.wantErr)
		}
	}
}
