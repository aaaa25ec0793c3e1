//go:build integration

package web_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/nodeagent"
)

// TestBrowserAdmin: an admin adds a user (invite link and QR code), the
// invite works, resets and removes the user; creates a lock with a hostile
// message (shown as text) and removes it; makes a join token whose command
// joins a real node. A user without the rights sees auth's refusal.
func TestBrowserAdmin(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	root := c.AddUser("root", []string{"admin"}, nil)
	base := "https://" + c.ProxyAddr()
	b := newBrowser(t, base)
	b.open("/web/login")
	b.signin(root)

	// Add a user: the invite link and its QR code, shown once.
	b.open("/web/admin/users")
	eval[bool](b, `(document.getElementById("add-user").open = true)`)
	b.fill("#user-name", "gina")
	b.fill("#user-roles", "dev")
	b.fill("#user-logins", "gina")
	b.submit("#user-add")
	link := b.text("#invite-url")
	if !strings.HasPrefix(link, base+"/web/invite/") {
		t.Fatalf("invite link %q", link)
	}
	if n := eval[float64](b, `document.querySelectorAll("#invite-qr svg path").length`); n != 1 {
		t.Fatal("no QR code")
	}
	b.screenshot("admin-invite")
	// The link opens the signup page for gina.
	g := b.context()
	g.open(strings.TrimPrefix(link, base))
	if got := g.text("#invite-user"); got != "gina" {
		t.Fatalf("the invite opens signup for %q", got)
	}
	b.open("/web/admin/users")
	if got := b.text(`#users tr.user[data-user="gina"] .status`); got == "" {
		t.Fatal("gina is not listed")
	}
	b.screenshot("admin-users")
	b.submit(`#users tr.user[data-user="gina"] button.reset`)
	if got := b.text("#invite-url"); got == link || !strings.Contains(got, "/web/invite/") {
		t.Fatalf("reset link %q", got)
	}
	b.open("/web/admin/users")
	b.submit(`#users tr.user[data-user="gina"] button.remove`)
	if n := eval[float64](b, `document.querySelectorAll('#users tr.user[data-user="gina"]').length`); n != 0 {
		t.Fatal("gina is still listed after removal")
	}

	// A lock with a hostile message, shown as text; then removed.
	b.open("/web/admin/locks")
	eval[bool](b, `(document.getElementById("new-lock").open = true)`)
	b.fill("#lock-user", "nobody")
	b.fill("#lock-message", xss)
	b.fill("#lock-ttl", "1h")
	b.submit("#lock-create")
	if got := b.text(`#locks tr.lock[data-user="nobody"] .reason`); got != xss {
		t.Fatalf("lock message shown as %q", got)
	}
	if got := b.text(`#locks tr.lock[data-user="nobody"] .target`); !strings.Contains(got, "user=nobody") {
		t.Fatalf("lock target %q", got)
	}
	b.screenshot("admin-locks")
	b.submit(`#locks tr.lock[data-user="nobody"] button.unlock`)
	if n := eval[float64](b, `document.querySelectorAll('#locks tr.lock[data-user="nobody"]').length`); n != 0 {
		t.Fatal("the lock is still listed after removal")
	}

	// A join token: its command joins a real node.
	b.open("/web/admin/tokens")
	b.submit("#token-create")
	cmd := b.text("#join-command")
	b.screenshot("admin-tokens")
	f := strings.Fields(cmd)
	flag := func(name string) string {
		for i, w := range f {
			if w == name && i+1 < len(f) {
				return f[i+1]
			}
		}
		t.Fatalf("no %s in %q", name, cmd)
		return ""
	}
	if flag("--proxy") != c.ProxyAddr() {
		t.Fatalf("command %q names another proxy", cmd)
	}
	if strings.Contains(cmd, "--token ") {
		t.Fatalf("the command puts the token on the command line, where ps shows it: %q", cmd)
	}
	n, err := nodeagent.Start(context.Background(), nodeagent.Config{
		Settings: nodeagent.Settings{Name: "joined", ProxyAddr: flag("--proxy"), Token: flag("echo"), CAPin: flag("--ca-pin")},
		DataDir:  t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("the token's command does not join a node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	c.WaitForNodes(2)

	for _, br := range []*browser{b, g} {
		if v := eval[bool](br, `window.__xss !== undefined`); v {
			t.Fatal("a hostile string ran as script")
		}
	}

	// Not an admin: auth refuses, the page says so.
	hal := c.AddUser("hal", []string{"dev"}, []string{"hal"})
	h := b.context()
	h.open("/web/login")
	h.signin(hal)
	h.open("/web/admin/users")
	if got := h.text("#error"); !strings.Contains(strings.ToLower(got), "denied") && !strings.Contains(strings.ToLower(got), "not allowed") {
		t.Fatalf("a non-admin sees %q", got)
	}
	if n := eval[float64](h, `document.querySelectorAll("#users").length`); n != 0 {
		t.Fatal("a non-admin sees the users")
	}
}
