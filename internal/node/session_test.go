package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

func TestExecWithOpenSSH(t *testing.T) {
	e := newEnv(t)
	login := currentLogin(t)
	id := e.newIdentity(certOpts{principals: []string{login}})

	tests := []struct {
		name       string
		command    string
		wantOut    string
		wantErr    string
		wantCode   int
		wantStdout *regexp.Regexp
	}{
		{name: "echo", command: "echo hi", wantOut: "hi\n"},
		{name: "exit status", command: "exit 42", wantCode: 42},
		{name: "stderr", command: "echo oops >&2; exit 3", wantErr: "oops\n", wantCode: 3},
		{name: "large output", command: "head -c 300000 /dev/zero | tr '\\0' x; echo", wantOut: strings.Repeat("x", 300000) + "\n"},
		{name: "env", command: `echo "$USER|$LOGNAME|$HOME|$SHELL|${SSH_TTY:-none}"`,
			wantStdout: regexp.MustCompile(`^` + login + `\|` + login + `\|/[^|]*\|/[^|]+\|none\n$`)},
		{name: "ssh connection vars", command: `echo "$SSH_CLIENT/$SSH_CONNECTION"`,
			wantStdout: regexp.MustCompile(`^127\.0\.0\.1 \d+ \d+/127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+\n$`)},
		{name: "path", command: `echo "$PATH"`, wantStdout: regexp.MustCompile(`/usr/bin`)},
		{name: "killed by signal", command: "kill -TERM $$", wantCode: 255},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.ssh(id, login, nil, tc.command)
			if r.code != tc.wantCode {
				t.Fatalf("exit code %d, want %d; stderr: %q", r.code, tc.wantCode, r.stderr)
			}
			if tc.wantStdout != nil {
				if !tc.wantStdout.MatchString(r.stdout) {
					t.Errorf("stdout %q does not match %v", r.stdout, tc.wantStdout)
				}
			} else if r.stdout != tc.wantOut {
				t.Errorf("stdout = %.200q, want %.200q", r.stdout, tc.wantOut)
			}
			if tc.wantErr != "" && r.stderr != tc.wantErr {
				t.Errorf("stderr = %q, want %q", r.stderr, tc.wantErr)
			}
			want := tc.wantCode
			if tc.name == "killed by signal" {
				want = 128 + 15
			}
			e.audit.wait(t, audit.Exec, func(ev audit.Event) bool {
				return ev.Fields["command"] == tc.command && ev.Fields["exit_code"] == want &&
					ev.Node == "web1" && ev.User == "alice" && ev.Login == login && ev.SessionID != ""
			})
		})
	}
}

func TestPTYDenied(t *testing.T) {
	e := newEnv(t)
	e.setAuthz(func(ctx context.Context, req AuthzRequest) (*Permissions, error) {
		p, _ := allowAll(ctx, req)
		p.PTY = false
		return p, nil
	})
	login := currentLogin(t)
	id := e.newIdentity(certOpts{principals: []string{login}})
	// ssh -t treats a refused PTY as fatal: nothing runs.
	r := e.ssh(id, login, []string{"-tt"}, "echo ran")
	if r.code == 0 || strings.Contains(r.stdout, "ran") || !strings.Contains(r.stderr, "PTY allocation request failed") {
		t.Errorf("ssh -tt: %+v", r)
	}
	c, err := e.client(id, login)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 24, 80, nil); err == nil {
		t.Error("RequestPty succeeded without PTY permission")
	}
	out, err := sess.Output("tty")
	if string(out) != "not a tty\n" {
		t.Errorf("tty without PTY: %q, %v", out, err)
	}
}

func TestSignalAndExitSignal(t *testing.T) {
	e := newEnv(t)
	login := currentLogin(t)
	c := e.connect(t, login)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var out syncbuf.Buffer
	sess.Stdout = &out
	if err := sess.Start("echo ready; exec sleep infinity"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "ready in %q", func() bool { return strings.Contains(out.String(), "ready") }, &out)
	if err := sess.Signal(ssh.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	err = sess.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "USR1" {
		t.Fatalf("Wait: %v, want exit signal USR1", err)
	}
}

func TestEnvAllowList(t *testing.T) {
	e := newEnv(t)
	login := currentLogin(t)
	c := e.connect(t, login)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for name, wantOK := range map[string]bool{"LANG": true, "LC_ALL": true, "TERM": true, "LD_PRELOAD": false, "PATH": false, "FOO": false} {
		err := sess.Setenv(name, "v-"+name)
		if (err == nil) != wantOK {
			t.Errorf("Setenv(%s) error %v, want ok=%v", name, err, wantOK)
		}
	}
	out, err := sess.Output(`echo "$LANG $LC_ALL $TERM ${LD_PRELOAD:-unset} ${FOO:-unset}"`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "v-LANG v-LC_ALL v-TERM unset unset\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMaxSessionsPerConn(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxSessionsPerConn = 2 })
	login := currentLogin(t)
	c := e.connect(t, login)
	var sessions []*ssh.Session
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	for i := range 2 {
		s, err := c.NewSession()
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		sessions = append(sessions, s)
	}
	testkit.WaitFor(t, "ActiveSessions == 2", func() bool { return e.srv.ActiveSessions() == 2 })
	var oce *ssh.OpenChannelError
	if _, err := c.NewSession(); !errors.As(err, &oce) || oce.Reason != ssh.ResourceShortage {
		t.Fatalf("third session: %v, want resource shortage", err)
	}
	sessions[0].Close()
	testkit.WaitFor(t, "ActiveSessions == 1", func() bool { return e.srv.ActiveSessions() == 1 })
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("session after close: %v", err)
	}
	sessions = append(sessions, s)
}

func TestCloseEndsSessions(t *testing.T) {
	e := newEnv(t)
	login := currentLogin(t)
	c := e.connect(t, login)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	sess.Stdout = &out
	// The session never ends by itself: only Close can end it.
	if err := sess.Start("echo ready; sleep infinity"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "ready in %q", func() bool { return strings.Contains(out.String(), "ready") }, &out)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sess.Wait(); err == nil {
		t.Error("session ended cleanly after server Close")
	}
	if n := e.srv.ActiveSessions(); n != 0 {
		t.Errorf("ActiveSessions = %d after Close", n)
	}
}

func TestStdinPassthrough(t *testing.T) {
	e := newEnv(t)
	login := currentLogin(t)
	id := e.newIdentity(certOpts{principals: []string{login}})
	input := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	args := append(e.sshOpts(id), "-p", fmt.Sprint(e.addr.Port), login+"@127.0.0.1", "sha256sum")
	r := e.run(strings.NewReader(input), "ssh", args...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	sum := sha256.Sum256([]byte(input))
	if want := hex.EncodeToString(sum[:]); !strings.HasPrefix(r.stdout, want) {
		t.Errorf("remote sha256 %q, want %s", r.stdout, want)
	}
}

// TestLiveSessionsHoldNoThreads: waiting for a session's process must not
// hold an OS thread per session (os/exec's Wait would), or a node's live
// sessions would be bounded by Go's thread limit and each would cost a
// thread's memory.
func TestLiveSessionsHoldNoThreads(t *testing.T) {
	const n = 40
	e := newEnv(t, func(c *Config) { c.MaxSessionsPerConn = n })
	login := currentLogin(t)
	c := e.connect(t, login)
	before := osThreads(t)
	var sessions []*ssh.Session
	for i := range n {
		s, err := c.NewSession()
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		sessions = append(sessions, s)
		var out syncbuf.Buffer
		s.Stdout = &out
		if err := s.Start("echo ready; exec sleep infinity"); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, "ready in %q", func() bool { return strings.Contains(out.String(), "ready") }, &out)
	}
	if grown := osThreads(t) - before; grown >= n/2 {
		t.Errorf("%d live sessions took %d more OS threads", n, grown)
	}
	// The processes are still waited for: a signal ends one with its
	// status.
	if err := sessions[0].Signal(ssh.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ee *ssh.ExitError
	if err := sessions[0].Wait(); !errors.As(err, &ee) || ee.Signal() != "TERM" {
		t.Fatalf("signalled session: %v, want exit signal TERM", err)
	}
	for _, s := range sessions[1:] {
		s.Close()
	}
	testkit.WaitFor(t, "ActiveSessions == 0", func() bool { return e.srv.ActiveSessions() == 0 })
}

// osThreads is the number of this process's OS threads.
func osThreads(t *testing.T) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\nThreads:")
	if !ok {
		t.Fatal("no Threads in /proc/self/status")
	}
	line, _, _ := strings.Cut(rest, "\n")
	v, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
