//go:build integration

package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/lock"
)

// openTerminal signs u in and opens a web terminal on node1 as login,
// waiting for the shell's prompt.
func openTerminal(t *testing.T, b *browser, u *clustertest.User, login string) {
	t.Helper()
	b.open("/web/login")
	b.signin(u)
	b.open("/web/servers/node1/terminal?login=" + login)
	b.waitJS(`document.getElementById("term-status").textContent === "connected"`)
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("$")`)
}

// TestBrowserLockEndsTerminal: a lock created while a web terminal is
// open ends it at once; the terminal shows the lock's message and the
// socket closes.
func TestBrowserLockEndsTerminal(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	carol := c.AddUser("carol", []string{"dev"}, []string{"carol"})
	clustertest.EnsureOSUser(t, "carol")
	b := newBrowser(t, "https://"+c.ProxyAddr())
	openTerminal(t, b, carol, "carol")
	b.typeText("echo before-$((6*7))")
	b.pressEnter()
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("before-42")`)

	if _, err := c.Admin.CreateLock(context.Background(), auth.CreateLockRequest{Target: lock.Target{User: "carol"},
		Message: "incident 4711: stop", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	b.waitJS(`document.getElementById("terminal").dataset.closed === "1"`)
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("incident 4711: stop")`)
	if st := b.text("#term-status"); !strings.HasPrefix(st, "disconnected") {
		t.Fatalf("status %q after the lock", st)
	}
	b.screenshot("terminal-locked")
}
