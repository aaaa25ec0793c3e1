//go:build integration

package node

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"regexp"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
	"golang.org/x/crypto/ssh"
)

// Tests that log in as another OS user: the node switches to it, which
// needs root.

// testUser is an unprivileged OS account created for tests.
const testUser = "wardentest"

func ensureTestUser(t testing.TB) *user.User {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("these tests need root to switch users (running as uid %d)", os.Geteuid())
	}
	if u, err := user.Lookup(testUser); err == nil {
		return u
	}
	out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", testUser).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "already exists") {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	u, err := user.Lookup(testUser)
	if err != nil {
		t.Fatalf("lookup %s: %v", testUser, err)
	}
	return u
}

func TestRunsAsRequestedUser(t *testing.T) {
	u := ensureTestUser(t)
	e := newEnv(t)
	id := e.newIdentity(certOpts{principals: []string{testUser}})
	r := e.ssh(id, testUser, nil, `whoami; echo "$HOME"; pwd; id -u; id -g`)
	if r.code != 0 {
		t.Fatalf("exit %d; stderr %q", r.code, r.stderr)
	}
	want := fmt.Sprintf("%s\n%s\n%s\n%s\n%s\n", testUser, u.HomeDir, u.HomeDir, u.Uid, u.Gid)
	if r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
}

func TestUnknownLoginRefused(t *testing.T) {
	e := newEnv(t)
	id := e.newIdentity(certOpts{principals: []string{"no-such-user-xyz"}})
	r := e.ssh(id, "no-such-user-xyz", nil, "true")
	if r.code != 255 || !strings.Contains(r.stderr, `login "no-such-user-xyz" does not exist on node "web1"`) {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestPTYWithOpenSSH(t *testing.T) {
	ensureTestUser(t)
	e := newEnv(t)
	id := e.newIdentity(certOpts{principals: []string{testUser}})
	r := e.ssh(id, testUser, []string{"-tt"}, `tty; echo "term=$TERM"; stty size; ls -l "$(tty)" | awk '{print $3}'; exit 7`)
	if r.code != 7 {
		t.Fatalf("exit %d, want 7; stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	out := strings.ReplaceAll(r.stdout, "\r\n", "\n")
	if !regexp.MustCompile(`(?m)^/dev/pts/\d+$`).MatchString(out) {
		t.Errorf("no pty in output %q", out)
	}
	if !regexp.MustCompile(`(?m)^term=\S+$`).MatchString(out) || strings.Contains(out, "term=\n") {
		t.Errorf("TERM not set: %q", out)
	}
	if !regexp.MustCompile(`(?m)^\d+ \d+$`).MatchString(out) {
		t.Errorf("no size in output %q", out)
	}
	if !regexp.MustCompile(`(?m)^` + testUser + `$`).MatchString(out) {
		t.Errorf("tty not owned by %s: %q", testUser, out)
	}
	e.audit.wait(t, audit.SessionStart, func(ev audit.Event) bool { return ev.Fields["tty"] == true })
	e.audit.wait(t, audit.SessionEnd, func(ev audit.Event) bool { return ev.Fields["exit_code"] == 7 })
}

// TestInteractiveShell drives a login shell through a PTY with the
// x/crypto/ssh client: window-change, input, exit status.
func TestInteractiveShell(t *testing.T) {
	ensureTestUser(t)
	e := newEnv(t)
	c := e.connect(t, testUser)
	sess, stdin, out := ptyShell(t, c, "xterm")
	fmt.Fprintf(stdin, "stty size; echo \"arg0=$0 term=$TERM\"\n")
	testkit.WaitFor(t, "initial size in %q", func() bool { return strings.Contains(out.String(), "40 100") }, out)
	if err := sess.WindowChange(50, 132); err != nil {
		t.Fatal(err)
	}
	// The window change and the input travel apart (a request, then
	// data): the shell waits for the new size to reach its terminal.
	fmt.Fprintf(stdin, "until [ \"$(stty size)\" = \"50 132\" ]; do sleep 0.01; done; stty size; exit 5\n")
	testkit.WaitFor(t, "new size in %q", func() bool { return strings.Contains(out.String(), "50 132") }, out)
	err := sess.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 5 {
		t.Fatalf("Wait: %v, want exit status 5", err)
	}
	s := out.String()
	for _, want := range []string{"50 132", "arg0=-bash term=xterm"} {
		if !strings.Contains(s, want) {
			t.Errorf("output %q lacks %q", s, want)
		}
	}
}

// ptyShell starts a shell with a 40x100 terminal of type term (no echo) on
// c, closed when the test ends; its output goes to out.
func ptyShell(t *testing.T, c *ssh.Client, term string) (sess *ssh.Session, stdin io.WriteCloser, out *syncbuf.Buffer) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	if err := sess.RequestPty(term, 40, 100, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	if stdin, err = sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out = &syncbuf.Buffer{}
	sess.Stdout = out
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	return sess, stdin, out
}
