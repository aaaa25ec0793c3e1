//go:build integration

package clustertest

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/testkit"
)

// hostile retitles the terminal, clears it, starts a C1 CSI colour and
// reverses the text that follows.
const hostile = "\x1b]0;pwned\x07\x1b[2J\u009b31m\u202ex"

// hostileEscaped is how text views show it.
const hostileEscaped = `\x1b]0;pwned\x07\x1b[2J\u009b31m\u202ex`

// assertNoControls fails if out holds anything a terminal acts on: control
// characters other than newline, DEL, C1 controls, bidi and zero-width
// characters, bytes that are not UTF-8.
func assertNoControls(t *testing.T, what, out string) {
	t.Helper()
	for i, r := range out {
		bad := r == utf8.RuneError || r < 0x20 && r != '\n' || r >= 0x7f && r <= 0x9f ||
			r >= 0x200b && r <= 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
		if bad {
			t.Fatalf("%s prints %U at byte %d:\n%q", what, r, i, out)
		}
	}
	if !strings.Contains(out, hostileEscaped) {
		t.Fatalf("%s does not show the value escaped (%s):\n%s", what, hostileEscaped, out)
	}
}

// TestTextViewsEscapeHostileValues: values users control (a node label a
// --label-cmd made, an access request's reason, a command in the audit
// log) reach admins' terminals escaped in every table and text view; JSON
// output keeps them exact.
func TestTextViewsEscapeHostileValues(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NoNode: true})
	c.ApplyRoles(requestRoles)
	c.StartNode("web1", map[string]string{"env": "dev"}, func(cfg *nodeagent.Config) {
		cfg.HeartbeatInterval = 100 * time.Millisecond
		cfg.Commands = []nodeagent.LabelCommand{{Name: "motd", Period: time.Hour,
			Command: []string{"printf", `\033]0;pwned\007\033[2J\302\23331m\342\200\256x`}}}
	})
	c.WaitForNodes(1)
	contractor := c.AddUser("contractor", []string{"contractor"}, []string{osLogin})
	home := c.Login(contractor)
	admin := t.TempDir() // no profile: admin commands use the data directory's identity

	// warden ls: the label, once the node has run its command.
	testkit.WaitFor(t, "hostile label", func() bool {
		r := c.Warden(home, nil, "ls", "-o", "json")
		var nodes []auth.Node
		return r.Code == 0 && json.Unmarshal([]byte(r.Stdout), &nodes) == nil && len(nodes) == 1 && nodes[0].Labels["motd"] == hostile
	})
	r := c.Warden(home, nil, "ls")
	if r.Code != 0 {
		t.Fatalf("ls: %s", r)
	}
	assertNoControls(t, "warden ls", r.Stdout)

	// An access request's reason.
	r = c.Warden(home, nil, "request", "create", "--roles", "prod-admin", "--reason", hostile, "--nowait")
	if r.Code != 0 {
		t.Fatalf("request create: %s", r)
	}
	id := regexp.MustCompile(`Request (\S+) created`).FindStringSubmatch(r.Stdout)[1]
	for _, args := range [][]string{{"request", "ls"}, {"request", "show", id}} {
		r := c.Warden(home, nil, args...)
		if r.Code != 0 {
			t.Fatalf("%v: %s", args, r)
		}
		assertNoControls(t, strings.Join(args, " "), r.Stdout)
	}
	r = c.Warden(home, nil, "request", "show", id, "-o", "json")
	var req access.Request
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &req) != nil || req.Reason != hostile {
		t.Fatalf("request show -o json does not keep the reason exact: %s", r)
	}

	// A command in the audit log.
	if r := c.Warden(home, nil, "ssh", osLogin+"@web1", "true '"+hostile+"'"); r.Code != 0 {
		t.Fatalf("ssh: %s", r)
	}
	testkit.WaitFor(t, "exec event", func() bool {
		evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.Exec})
		return err == nil && len(evs) > 0
	})
	for _, args := range [][]string{
		{"audit", "search", "--type", audit.Exec},
		{"audit", "search", "--type", audit.RequestCreate},
		{"audit", "tail", "-n", "100"},
	} {
		r := c.Warden(admin, nil, args...)
		if r.Code != 0 {
			t.Fatalf("%v: %s", args, r)
		}
		assertNoControls(t, strings.Join(args, " "), r.Stdout)
	}
	r = c.Warden(admin, nil, "audit", "search", "--type", audit.Exec, "-o", "json")
	var ev audit.Event
	if r.Code != 0 || json.Unmarshal([]byte(strings.SplitN(r.Stdout, "\n", 2)[0]), &ev) != nil || ev.Fields["command"] != "true '"+hostile+"'" {
		t.Fatalf("audit search -o json does not keep the command exact: %s", r)
	}
}
