package sshclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// ExitConnectionError is the exit code Run returns when there is no remote
// exit status (connection or protocol errors), as OpenSSH's ssh does.
const ExitConnectionError = 255

// RunOptions describe one remote command or shell.
type RunOptions struct {
	Command string // empty means a login shell
	TTY     bool   // request a PTY
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Env     map[string]string // sent as "env" requests; servers may ignore them (sshd's AcceptEnv)
}

// Run runs opt.Command (or a login shell if it is empty) and returns the
// remote exit status. A command killed by a signal gives 128+signal number.
// err is nil whenever the remote side reported how the command ended; it is
// set, with exit code ExitConnectionError, for connection errors, protocol
// errors and when ctx ends (the session is then closed).
//
// With TTY set and Stdin a terminal, the local terminal is put in raw mode
// (restored when Run returns, also on panic or ctx cancellation), the PTY
// gets $TERM and the terminal's size, and size changes are forwarded.
//
// When ctx ends, Run returns at once; the remote command may keep running
// until the server stops it or the client is closed. Stdin is copied by a
// goroutine that can stay blocked in a read of a terminal until the next
// keystroke after Run returns; the CLI exits right after, so this only
// matters to callers that read the same stdin afterwards.
func Run(ctx context.Context, client *ssh.Client, opt RunOptions) (exitCode int, err error) {
	if client == nil {
		return ExitConnectionError, errors.New("run: not connected")
	}
	sess, err := client.NewSession()
	if err != nil {
		return ExitConnectionError, fmt.Errorf("open session: %w", err)
	}
	defer sess.Close()

	keys := make([]string, 0, len(opt.Env))
	for k := range opt.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// Like OpenSSH, go on when the server refuses a variable.
		_ = sess.Setenv(k, opt.Env[k])
	}

	// When ctx ends, Run returns without waiting for the server to close the
	// channel (sshd keeps it open until the command exits), so output that
	// still arrives must not reach the caller's writers after Run returned.
	stdout, stderr := &gatedWriter{w: opt.Stdout}, &gatedWriter{w: opt.Stderr}
	defer stdout.shut()
	defer stderr.shut()
	sess.Stdin = opt.Stdin
	if opt.Stdout != nil {
		sess.Stdout = stdout
	}
	if opt.Stderr != nil {
		sess.Stderr = stderr
	}
	if opt.TTY {
		restore, err := setupTTY(sess, opt)
		if err != nil {
			return ExitConnectionError, err
		}
		defer restore()
	}

	if opt.Command == "" {
		err = sess.Shell()
	} else {
		err = sess.Start(opt.Command)
	}
	if err != nil {
		return ExitConnectionError, fmt.Errorf("start remote command: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sess.Wait() }()
	select {
	case err := <-waited:
		return exitStatus(err)
	case <-ctx.Done():
		// Ask the remote command to stop; servers may ignore this (OpenSSH
		// does for some setups) and keep it running until it ends or the
		// connection closes.
		_ = sess.Signal(ssh.SIGHUP)
		sess.Close()
		return ExitConnectionError, ctx.Err()
	}
}

// gatedWriter passes writes on until shut, then drops them.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gatedWriter) shut() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// exitStatus maps the result of Session.Wait to an exit code.
func exitStatus(err error) (int, error) {
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if sig := ee.Signal(); sig != "" {
			if n, ok := signalNumbers[sig]; ok {
				return 128 + n, nil
			}
			return ExitConnectionError, nil
		}
		return ee.ExitStatus(), nil
	case errors.As(err, &missing):
		return ExitConnectionError, errors.New("the remote side closed the session without an exit status")
	default:
		return ExitConnectionError, fmt.Errorf("session: %w", err)
	}
}

// signalNumbers are the POSIX/Linux numbers of the signal names RFC 4254
// sends (without "SIG").
var signalNumbers = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8,
	"KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
}

// fder is what *os.File offers to find out whether it is a terminal.
type fder interface{ Fd() uintptr }

// setupTTY requests a PTY. If opt.Stdin is a terminal it also switches it to
// raw mode and forwards window size changes; the returned func undoes that.
func setupTTY(sess *ssh.Session, opt RunOptions) (restore func(), err error) {
	termName := os.Getenv("TERM")
	if termName == "" {
		termName = "xterm"
	}
	width, height := 80, 24
	inFd, interactive := terminalFd(opt.Stdin)
	sizeFd := inFd
	if outFd, ok := terminalFd(opt.Stdout); ok {
		sizeFd = outFd
	}
	if interactive {
		if w, h, err := term.GetSize(sizeFd); err == nil && w > 0 && h > 0 {
			width, height = w, h
		}
	}
	modes := ssh.TerminalModes{
		ssh.ECHO:          1,
		ssh.TTY_OP_ISPEED: 38400,
		ssh.TTY_OP_OSPEED: 38400,
	}
	if err := sess.RequestPty(termName, height, width, modes); err != nil {
		return nil, fmt.Errorf("request a terminal: %w", err)
	}
	if !interactive {
		return func() {}, nil
	}
	state, err := term.MakeRaw(inFd)
	if err != nil {
		return nil, fmt.Errorf("put the terminal in raw mode: %w", err)
	}
	stopWatch := watchWindowSize(sizeFd, func(w, h int) { _ = sess.WindowChange(h, w) })
	return func() {
		stopWatch()
		_ = term.Restore(inFd, state)
	}, nil
}

func terminalFd(v any) (int, bool) {
	f, ok := v.(fder)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}
