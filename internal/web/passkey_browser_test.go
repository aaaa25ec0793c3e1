//go:build integration

package web_test

import (
	"context"
	"fmt"
	"io"
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
	warden := func(stdin io.Reader, args ...string) (int, string) {
		var o syncbuf.Buffer
		code := cli.RunIO(ctx, append([]string{"--home", home, "--data-dir", t.TempDir()}, args...), &cli.IO{In: stdin, Out: &o, Err: &o})
		return code, o.String()
	}
	if code, got := warden(strings.NewReader(""), "mfa", "ls"); code != 0 || !strings.Contains(got, "laptop") || !strings.Contains(got, "webauthn (passkey)") {
		t.Fatalf("warden mfa ls: %d %s", code, got)
	}

	// warden mfa add: a TOTP device, its first code typed at the prompt.
	in, typeIn := io.Pipe()
	var addOut syncbuf.Buffer
	added := make(chan int, 1)
	go func() {
		added <- cli.RunIO(ctx, []string{"--home", home, "mfa", "add", "--name", "phone"}, &cli.IO{In: in, Out: &addOut, Err: &addOut})
	}()
	var secret string
	testkit.WaitFor(t, "the new device's secret", func() bool {
		m := regexp.MustCompile(`Secret: ([A-Z2-7]+)`).FindStringSubmatch(addOut.String())
		if m != nil {
			secret = m[1]
		}
		return m != nil
	})
	phone := &clustertest.User{Name: "alice", TOTPSecret: secret}
	fmt.Fprintln(typeIn, phone.NextOTP(t))
	if code := <-added; code != 0 || !strings.Contains(addOut.String(), `MFA device "phone" added`) {
		t.Fatalf("warden mfa add: %d %s", code, addOut.String())
	}
	// Recovery codes after a fresh check with the new device.
	code, got := warden(strings.NewReader(""), "mfa", "recovery-codes", "--otp", phone.NextOTP(t))
	codes := regexp.MustCompile(`(?m)^\s+([a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5})$`).FindAllStringSubmatch(got, -1)
	if code != 0 || len(codes) != 10 {
		t.Fatalf("warden mfa recovery-codes: %d %s", code, got)
	}
	// Recovery codes again, the fresh check with the passkey in the
	// browser: the command prints the page to open, and waits for it.
	rcDone := make(chan int, 1)
	var rcOut syncbuf.Buffer
	go func() {
		rcDone <- cli.RunIO(ctx, []string{"--home", home, "mfa", "recovery-codes", "--passkey", "--browser", "none"},
			&cli.IO{In: strings.NewReader(""), Out: &rcOut, Err: &rcOut})
	}()
	var mfaPage string
	testkit.WaitFor(t, "the MFA page's URL", func() bool {
		m := regexp.MustCompile(`(?m)^\s+(https://\S+/web/mfa\?state=\S+)$`).FindStringSubmatch(rcOut.String())
		if m != nil {
			mfaPage = m[1]
		}
		return m != nil
	})
	b.do(chromedp.Navigate(mfaPage))
	b.do(chromedp.Click(chromedp.CSS("#mfa-confirm")))
	b.waitAcrossNavigation(`location.hostname === "127.0.0.1" && document.body.textContent.includes("received")`)
	if code := <-rcDone; code != 0 {
		t.Fatalf("warden mfa recovery-codes --passkey: %d %s", code, rcOut.String())
	}
	old := codes
	codes = regexp.MustCompile(`(?m)^\s+([a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5})$`).FindAllStringSubmatch(rcOut.String(), -1)
	if len(codes) != 10 || codes[0][1] == old[0][1] {
		t.Fatalf("warden mfa recovery-codes --passkey: %s", rcOut.String())
	}

	// Never the last device.
	for _, d := range []string{"otp", "phone"} {
		if code, got := warden(strings.NewReader(""), "mfa", "rm", d); code != 0 {
			t.Fatalf("warden mfa rm %s: %s", d, got)
		}
	}
	if code, got := warden(strings.NewReader(""), "mfa", "rm", "laptop"); code == 0 || !strings.Contains(got, "only MFA device") {
		t.Fatalf("warden mfa rm of the last device: %d %s", code, got)
	}

	// A recovery code in place of the second factor, once; then new codes
	// on the Security page after a fresh check with the passkey.
	b.open("/web/login")
	alice.TOTPSecret = ""
	b.fill("#user", "alice")
	b.fill("#password", alice.Password)
	b.fill("#otp", codes[0][1])
	b.submit("#signin")
	if loc := b.location(); !strings.HasSuffix(loc, "/web/servers") {
		t.Fatalf("sign-in with a recovery code at %s", loc)
	}
	b.open("/web/security")
	if got := b.text("#recovery-left"); got != "9" {
		t.Fatalf("recovery codes left %q", got)
	}
	b.do(chromedp.Click(chromedp.CSS("#recovery-passkey")))
	b.waitAcrossNavigation(`document.querySelectorAll("#recovery-codes li").length === 10`)
	if got := b.text("#recovery-left"); got != "10" {
		t.Fatalf("after new codes, %q left", got)
	}
	b.signout()
	b.open("/web/login")
	b.fill("#user", "alice")
	b.fill("#password", alice.Password)
	b.fill("#otp", codes[1][1])
	b.submit("#signin")
	if got := b.text("#error"); !strings.Contains(got, "Wrong user name, password or code") {
		t.Fatalf("an old recovery code: %q", got)
	}
}

// TestBrowserRequirePasskey: with auth.require_passkey, a password sign-in
// of a user without a passkey leads to registering one, then signing in
// with it; password and code alone no longer sign in.
func TestBrowserRequirePasskey(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Proxy: service.ProxyConfig{PublicAddr: "localhost:0"},
		Auth: service.AuthConfig{RequirePasskey: true}})
	c.ApplyRoles(roles)
	_, port, _ := net.SplitHostPort(c.ProxyAddr())
	b := newBrowser(t, "https://"+net.JoinHostPort("localhost", port))
	b.virtualAuthenticator()
	bob := c.AddUser("bob", []string{"dev"}, nil)
	b.open("/web/login")
	b.signin(bob)
	if got := b.text("#notice"); !strings.Contains(got, "requires a passkey") {
		t.Fatalf("password sign-in without a passkey: %q at %s", got, b.location())
	}
	b.fill("#passkey-name", "laptop")
	b.clickTo("#passkey-add", "/web/login?enrolled=1&next=%2Fweb%2Fservers")
	b.clickTo("#passkey-signin", "/web/servers")
	b.signout()
	b.open("/web/login")
	b.signin(bob)
	if got := b.text("#error"); !strings.Contains(got, "requires a passkey: sign in with it") {
		t.Fatalf("password sign-in with a passkey: %q", got)
	}
}
