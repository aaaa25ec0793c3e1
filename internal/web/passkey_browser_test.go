//go:build integration

package web_test

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/cli"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// virtualAuthenticator gives the browser's tab Chromium's virtual
// authenticator (CDP WebAuthn domain): a platform authenticator (CTAP2,
// internal transport) with resident keys and user verification, whose
// user is verified, so passkeys are real WebAuthn ceremonies without a
// person at the keyboard.
func (b *browser) virtualAuthenticator() {
	b.t.Helper()
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
			Options: &webauthn.VirtualAuthenticatorOptions{Protocol: webauthn.AuthenticatorProtocolCtap2,
				Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
				IsUserVerified: true, AutomaticPresenceSimulation: true}})
		return err
	}))
}

// clickTo clicks a button whose script ends by loading another page, and
// waits for that page.
func (b *browser) clickTo(sel, pathSuffix string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(sel)))
	b.waitAcrossNavigation(`((location.pathname + location.search).endsWith(` + jsString(pathSuffix) + `) && document.readyState === "complete") || ` +
		`!!(document.getElementById("passkey-error") && !document.getElementById("passkey-error").hidden)`)
	if loc := b.location(); !strings.HasSuffix(loc, pathSuffix) {
		b.t.Fatalf("after %s at %s (error: %q), want %s", sel, loc, eval[string](b, `(document.getElementById("passkey-error")||{}).textContent||""`), pathSuffix)
	}
}

// waitAcrossNavigation is waitJS for a condition that a navigation
// (which interrupts a poll) may come before.
func (b *browser) waitAcrossNavigation(expr string) {
	b.t.Helper()
	testkit.WaitFor(b.t, expr, func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		return err == nil && ok
	})
}

func jsString(s string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"` }

func (b *browser) signout() {
	b.t.Helper()
	b.open("/web/me")
	b.submit("#signout")
}

// TestBrowserPasskeys: a user registers a passkey on the Security page,
// signs in with it alone (passwordless, user verification), with the
// password and the passkey instead of a code, and `warden login --passkey`
// gets certificates through the browser page it prints.
func TestBrowserPasskeys(t *testing.T) {
	// Passkeys need a domain as the relying party: browsers refuse IP
	// addresses. The proxy's public address is localhost.
	c := clustertest.New(t, clustertest.Options{Proxy: service.ProxyConfig{PublicAddr: "localhost:0"}})
	c.ApplyRoles(roles)
	_, port, _ := net.SplitHostPort(c.ProxyAddr())
	public := net.JoinHostPort("localhost", port)
	base := "https://" + public
	b := newBrowser(t, base)
	b.virtualAuthenticator()
	alice := c.AddUser("alice", []string{"dev"}, nil)

	// Register a passkey, named, on the Security page.
	b.open("/web/login")
	b.signin(alice)
	b.open("/web/security?add=laptop")
	if got := eval[string](b, `document.getElementById("passkey-name").value`); got != "laptop" {
		t.Fatalf("the name from warden mfa add is %q", got)
	}
	b.clickTo("#passkey-add", "/web/security?done=added")
	if got := b.text(`#devices tr[data-device="laptop"] .kind`); got != "passkey" {
		t.Fatalf("the new device is a %q, want passkey", got)
	}
	b.screenshot("security")
	b.signout()

	// Passwordless: the passkey alone.
	b.open("/web/login")
	b.clickTo("#passkey-signin", "/web/servers")
	b.open("/web/me")
	if got := b.text("#me-user"); got != "alice" {
		t.Fatalf("passwordless sign-in as %q", got)
	}
	b.signout()

	// Second factor: the password, then the passkey instead of a code.
	b.open("/web/login")
	b.fill("#user", "alice")
	b.fill("#password", "wrong password for sure")
	b.do(chromedp.Click(chromedp.CSS("#passkey-2fa")))
	b.waitJS(`!document.getElementById("passkey-error").hidden`)
	if got := b.text("#passkey-error"); !strings.Contains(got, "wrong user name or password") {
		t.Fatalf("wrong password: %q", got)
	}
	b.fill("#password", alice.Password)
	b.clickTo("#passkey-2fa", "/web/servers")
	b.signout()

	evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.UserLogin, User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, ev := range evs {
		if ev.Success {
			methods = append(methods, ev.Fields["method"].(string))
		}
	}
	if got := strings.Join(methods, ","); !strings.HasSuffix(got, "password+totp,passkey,password+passkey") {
		t.Fatalf("successful logins %s", got)
	}

	// warden login --passkey --browser none: the printed URL, opened in
	// the browser, signs the CLI in.
	home := t.TempDir()
	var out, errb syncbuf.Buffer
	ctx, cancel := context.WithDeadline(context.Background(), patience.Deadline(t))
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- cli.RunIO(ctx, []string{"--data-dir", t.TempDir(), "--home", home, "login", "--proxy", public,
			"--passkey", "--browser", "none"}, &cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	}()
	var page string
	testkit.WaitFor(t, "the sign-in URL", func() bool {
		m := regexp.MustCompile(`(?m)^\s+(https://\S+/web/login/passkey\?state=\S+)$`).FindStringSubmatch(errb.String())
		if m != nil {
			page = m[1]
		}
		return m != nil
	})
	b.do(chromedp.Navigate(page))
	b.do(chromedp.Click(chromedp.CSS("#passkey-signin")))
	b.waitAcrossNavigation(`location.hostname === "127.0.0.1" && document.body.textContent.includes("sign-in received")`)
	if code := <-done; code != 0 {
		t.Fatalf("warden login --passkey: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "User:    alice") {
		t.Fatalf("warden login --passkey: %s", out.String())
	}
	// The certificates work: warden mfa ls as alice lists the passkey.
	var ls syncbuf.Buffer
	if code := cli.RunIO(ctx, []string{"--home", home, "mfa", "ls"}, &cli.IO{In: strings.NewReader(""), Out: &ls, Err: &ls}); code != 0 ||
		!strings.Contains(ls.String(), "laptop") || !strings.Contains(ls.String(), "webauthn (passkey)") {
		t.Fatalf("warden mfa ls: %d %s", code, ls.String())
	}
}
