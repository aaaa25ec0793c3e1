//go:build integration

package web_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/service"
)

// TestBrowserTerminalSessionMFA: per-session MFA in the web terminal, in
// a real browser. The terminal page asks for the check: a wrong code is
// refused on the form, the right one opens the shell. Then with a passkey
// (Chromium's virtual authenticator): the page's passkey button answers
// the check. A lock on the passkey (warden lock --mfa-device) ends the
// terminal that check opened, with the lock's message, and leaves alone
// the terminal the TOTP device opened.
func TestBrowserTerminalSessionMFA(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Proxy: service.ProxyConfig{PublicAddr: "localhost:0"},
		NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(sessionMFARoles)
	_, port, _ := net.SplitHostPort(c.ProxyAddr())
	b := newBrowser(t, "https://"+net.JoinHostPort("localhost", port))
	b.virtualAuthenticator()
	dave := c.AddUser("dave", []string{"dev-mfa"}, []string{"dave"})
	clustertest.EnsureOSUser(t, "dave")
	b.open("/web/login")
	b.signin(dave)

	// TOTP.
	b.open("/web/servers/node1/terminal?login=dave")
	b.waitJS(`!document.getElementById("mfa-form").hidden && !document.getElementById("mfa-totp").hidden`)
	if got := b.text("#mfa-label"); !strings.Contains(got, "dave@node1 requires an MFA check") {
		t.Fatalf("MFA form label %q", got)
	}
	b.screenshot("terminal-session-mfa")
	b.fill("#mfa-otp", "000000")
	b.do(chromedp.Click(chromedp.CSS("#mfa-submit")))
	b.waitJS(`!document.getElementById("mfa-error").hidden`)
	if got := b.text("#mfa-error"); !strings.Contains(got, "invalid MFA code") {
		t.Fatalf("wrong code: %q", got)
	}
	b.fill("#mfa-otp", dave.NextOTP(t))
	b.do(chromedp.Click(chromedp.CSS("#mfa-submit")))
	b.waitJS(`document.getElementById("term-status").textContent === "connected"`)
	b.waitJS(`document.getElementById("mfa-form").hidden`)
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("$")`)
	b.typeText("echo totp-$((6*7))")
	b.pressEnter()
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("totp-42")`)

	// A passkey, registered on the Security page, answers the check in a
	// second tab.
	pb := b.tab()
	pb.virtualAuthenticator()
	pb.open("/web/security?add=laptop")
	pb.clickTo("#passkey-add", "/web/security?done=added")
	pb.open("/web/servers/node1/terminal?login=dave")
	pb.waitJS(`!document.getElementById("mfa-form").hidden && !document.getElementById("mfa-webauthn").hidden`)
	pb.do(chromedp.Click(chromedp.CSS("#mfa-passkey")))
	pb.waitJS(`document.getElementById("term-status").textContent === "connected"`)
	pb.waitJS(`document.querySelector(".xterm-rows").textContent.includes("$")`)
	pb.typeText("echo passkey-$((6*7))")
	pb.pressEnter()
	pb.waitJS(`document.querySelector(".xterm-rows").textContent.includes("passkey-42")`)

	var passkey, totp string
	for _, ev := range auditEvents(t, c, audit.MFAVerify, "dave", func(ev audit.Event) bool { return ev.Success && ev.Fields["purpose"] == "session" }) {
		switch ev.Fields["kind"] {
		case "webauthn":
			passkey, _ = ev.Fields["mfa_device"].(string)
		case "totp":
			totp, _ = ev.Fields["mfa_device"].(string)
		}
	}
	if passkey == "" || totp == "" {
		t.Fatalf("per-session checks audited: passkey %q, totp %q", passkey, totp)
	}

	// Lock the passkey: its terminal ends with the message; the TOTP one
	// goes on.
	if _, err := c.Admin.CreateLock(context.Background(), auth.CreateLockRequest{Target: lock.Target{MFADevice: passkey},
		Message: "lost laptop 81", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	pb.waitJS(`document.getElementById("terminal").dataset.closed === "1"`)
	pb.waitJS(`document.querySelector(".xterm-rows").textContent.includes("lost laptop 81")`)
	b.typeText("echo still-$((6*7))")
	b.pressEnter()
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("still-42")`)
	if b.text("#term-status") != "connected" {
		t.Fatalf("the TOTP terminal: %q", b.text("#term-status"))
	}
}

// tab opens another tab of the same browser context (the same cookies:
// the same person).
func (b *browser) tab() *browser {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("new tab: %v", err)
	}
	nb := *b
	nb.ctx = ctx
	return &nb
}
