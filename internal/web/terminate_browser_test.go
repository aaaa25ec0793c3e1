//go:build integration

package web_test

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
)

// TestBrowserTerminateSession: an admin ends a live session from the live
// sessions page. A real OpenSSH session ends at once with the admin's
// message; another session of the same user lives on; the lock and the
// session's end are audited; a user without the lock right is refused.
func TestBrowserTerminateSession(t *testing.T) {
	c, erin, mentor := liveCluster(t)
	root := c.AddUser("root", []string{"admin"}, nil)

	home := c.Login(erin)
	cfg := c.SSHConfig(home)
	shell := func(tag string) (*exec.Cmd, io.Writer, *syncbuf.Buffer) {
		cmd := exec.Command("ssh", "-F", cfg, "-o", "BatchMode=yes", "-tt", "erin@node1")
		var out syncbuf.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		io.WriteString(stdin, "echo "+tag+"-$((2+3))\n")
		waitOutput(t, &out, tag+"-5")
		return cmd, stdin, &out
	}
	// Two sessions of erin's: the first is the one to end.
	sessions := func(n int) []auth.LiveSession {
		deadline := patience.Deadline(t)
		for {
			list, err := c.Admin.ListSessions(context.Background())
			if err != nil || time.Now().After(deadline) {
				t.Fatalf("waiting for %d live sessions: %v %+v", n, err, list)
			}
			if len(list) == n {
				return list
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	victim, _, victimOut := shell("ONE")
	id := sessions(1)[0].ID
	_, otherIn, otherOut := shell("TWO")
	sessions(2)

	// A mentor may list sessions but not lock: refused, the session lives.
	m := newBrowser(t, "https://"+c.ProxyAddr())
	m.open("/web/login")
	m.signin(mentor)
	m.open("/web/sessions")
	m.submit(`#live-sessions tr.live[data-session="` + id + `"] form.terminate button`)
	if got := m.text("main"); !strings.Contains(got, "lock") {
		t.Fatalf("mentor's terminate: %q", got)
	}

	b := m.context()
	b.open("/web/login")
	b.signin(root)
	b.open("/web/sessions")
	b.fill(`#live-sessions tr.live[data-session="`+id+`"] input[name=message]`, `maintenance <b>now</b>`)
	b.submit(`#live-sessions tr.live[data-session="` + id + `"] form.terminate button`)
	if got := b.text("#notice"); !strings.Contains(got, id) {
		t.Fatalf("notice: %q", got)
	}
	waitOutput(t, victimOut, "session terminated by root: maintenance <b>now</b>")
	victim.Wait()
	// The other session of the same user goes on.
	io.WriteString(otherIn, "echo STILL-$((3+4))\n")
	waitOutput(t, otherOut, "STILL-7")

	evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.LockCreated, User: "root"})
	if err != nil || len(evs) != 1 || evs[0].Fields["target"] != "session="+id {
		t.Fatalf("lock.created: %v %+v", err, evs)
	}
	// The node's session.end reaches auth over its event stream.
	deadline := patience.Deadline(t)
	for {
		evs, err = c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.SessionEnd, SessionID: id})
		if err == nil && len(evs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session.end: %v %+v", err, evs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if evs[0].Fields["reason"] != "locked" {
		t.Fatalf("session.end: %+v", evs[0])
	}
}
