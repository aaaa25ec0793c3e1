package node

import (
	"context"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// The owner of a live session, on the real OpenSSH client with a
// terminal, is told when someone joins and leaves, between two of the
// terminal's writes; a user name with terminal escapes in it is shown
// neutralised; the shell goes on.
func TestJoinNoticeToOwner(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.JoinPolicy = func(Permissions, string, []string, string) error { return nil }
	})
	login := currentLogin(t)
	owner := e.newIdentity(certOpts{principals: []string{login}})
	ctx, cancel := context.WithDeadline(context.Background(), patience.Deadline(t))
	defer cancel()
	args := append(e.sshOpts(owner), "-p", strconv.Itoa(e.addr.Port), "-tt", login+"@127.0.0.1")
	cmd := exec.CommandContext(ctx, "ssh", args...)
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testkit.WaitFor(t, "the owner's shell", func() bool {
		_, _ = io.WriteString(in, "echo READY-$((1+1))\n")
		return strings.Contains(out.String(), "READY-2")
	}, &out)
	start := e.audit.wait(t, audit.SessionStart, func(ev audit.Event) bool { return ev.Fields["tty"] == true })

	name := "bob\x1b]0;owned\x07\u009b2J"
	joiner := e.newIdentity(certOpts{principals: []string{ca.InternalPrincipalPrefix + name}, keyID: name})
	jc, err := e.client(joiner, ca.InternalPrincipalPrefix+name)
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	js, err := jc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var seen syncbuf.Buffer
	js.Stdout, js.Stderr = &seen, &seen
	if err := js.Start("join " + start.SessionID + " observer"); err != nil {
		t.Fatal(err)
	}
	joined := "\r\nwarden: bob?]0;owned??2J joined this session as observer\r\n"
	testkit.WaitFor(t, "the join notice on the owner's terminal", func() bool { return strings.Contains(out.String(), joined) }, &out)
	if strings.Contains(out.String(), "\x1b]0;owned") {
		t.Fatalf("the joiner's name reached the owner's terminal raw: %q", out.String())
	}
	// Everyone in the session sees it, and what follows.
	testkit.WaitFor(t, "the observer's view", func() bool {
		_, _ = io.WriteString(in, "echo SEEN-$((6*7))\n")
		return strings.Contains(seen.String(), "SEEN-42")
	}, &seen)
	js.Close()
	left := "\r\nwarden: bob?]0;owned??2J (observer) left this session\r\n"
	testkit.WaitFor(t, "the leave notice on the owner's terminal", func() bool { return strings.Contains(out.String(), left) }, &out)
	testkit.WaitFor(t, "the shell after the notices", func() bool {
		_, _ = io.WriteString(in, "echo AFTER-$((2+2))\n")
		return strings.Contains(out.String(), "AFTER-4")
	}, &out)
	_, _ = io.WriteString(in, "exit\n")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the owner's ssh: %v\n%s", err, out.String())
	}
}
