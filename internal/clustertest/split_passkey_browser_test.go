//go:build integration

package clustertest

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/testkit"
)

// virtualAuthenticator gives the tab Chromium's virtual authenticator
// (CDP WebAuthn domain): a platform authenticator with resident keys and
// a verified user, so passkeys are real WebAuthn ceremonies.
func (b *splitBrowser) virtualAuthenticator() {
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

// eval evaluates a JavaScript expression.
func (b *splitBrowser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return s
}

// passkeyErrorShown is true when a page shows its passkey error.
const passkeyErrorShown = `!!(document.getElementById("passkey-error") && !document.getElementById("passkey-error").hidden)`

// clickTo clicks a button whose script ends by loading another page and
// waits for that page (or the passkey error the page shows instead).
func (b *splitBrowser) clickTo(sel, pathSuffix string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(sel)))
	b.waitAcross(`((location.pathname + location.search).endsWith(` + quoted(pathSuffix) + `) && document.readyState === "complete") || ` +
		passkeyErrorShown + ` || ` + errorPage)
	if b.is(errorPage) {
		// Chromium's error page: the load the script started failed.
		// When it was the expected page (the server's answer was right)
		// and it failed for a network change, load it again, as a user
		// would; any other failure is the test's.
		url := b.failedURL()
		if !strings.HasSuffix(url, pathSuffix) {
			b.t.Fatalf("after %s the browser failed to load %s, want %s", sel, url, pathSuffix)
		}
		b.open(pathSuffix)
	}
	if loc := b.eval(`location.pathname + location.search`); !strings.HasSuffix(loc, pathSuffix) {
		b.t.Fatalf("after %s at %s (error: %q), want %s", sel, loc, b.text("#passkey-error"), pathSuffix)
	}
}

// addPasskey signs u in with password and code and registers a passkey
// called "laptop" on the Security page; u stays signed in.
func (b *splitBrowser) addPasskey(u *User) {
	b.t.Helper()
	b.signInWithPassword(u)
	b.waitJS(`location.pathname === "/web/servers"`)
	b.open("/web/security?add=laptop")
	b.clickTo("#passkey-add", "/web/security?done=added")
}

// failedURL is the address of the page whose load failed (the entry of
// Chromium's error page in the tab's history).
func (b *splitBrowser) failedURL() string {
	b.t.Helper()
	var url string
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		h, err := cdp.Call(ctx, t, page.GetNavigationHistory, cdp.Empty{})
		if err != nil {
			return err
		}
		if h.CurrentIndex >= 0 && int(h.CurrentIndex) < len(h.Entries) {
			url = h.Entries[h.CurrentIndex].URL
		}
		return nil
	}))
	return url
}

// splitPasskeyLab is auth and a proxy running apart, and a browser with a
// virtual authenticator reaching the proxy. Passkeys need a domain as
// the relying party and browsers allow them on localhost: the browser
// reaches the proxy through a relay on the test's loopback, the origin
// auth's WebAuthn settings list. authExtra goes into auth's settings.
func splitPasskeyLab(t *testing.T, authExtra string) (*splitCluster, *splitAuth, *splitProxyProc, *splitBrowser) {
	t.Helper()
	return splitPasskeyLabWith(t, authExtra, nil)
}

// splitPasskeyLabWith is splitPasskeyLab with more hosts started by
// setup (e.g. nodes) before the browser: Chromium aborts what it is
// doing when the machine's interfaces change under it.
func splitPasskeyLabWith(t *testing.T, authExtra string, setup func(*splitCluster, *splitAuth, *splitProxyProc)) (*splitCluster, *splitAuth, *splitProxyProc, *splitBrowser) {
	t.Helper()
	s := newSplitCluster(t)
	relay := newTCPRelay(t, "127.0.0.1:1")
	_, port, _ := net.SplitHostPort(relay.Addr())
	origin := "https://localhost:" + port
	s.authExtra = `, ` + authExtra + `webauthn: {rp_id: localhost, origins: ["` + origin + `"]}`
	authA := s.StartAuth("auth-a")
	proxyA := s.StartProxy("proxy-a", authA, authA)
	relay.SetTarget(proxyA.Addr())
	if setup != nil {
		setup(s, authA, proxyA)
	}
	b := newSplitBrowser(t, origin)
	b.virtualAuthenticator()
	return s, authA, proxyA, b
}

// TestSplitProxyWebPasskey: a real browser (headless Chromium, its
// virtual authenticator) at the web UI of a proxy running apart from
// auth: the user signs in with password and TOTP, registers a passkey on
// the proxy's Security page, signs out, and signs in with the passkey
// alone, then with the password and the passkey (a wrong password
// refused first); auth audits the sign-ins as the web's, from the
// browser's address (splitPasskeyLab: the browser reaches the proxy as
// localhost, through a relay).
func TestSplitProxyWebPasskey(t *testing.T) {
	s, authA, _, b := splitPasskeyLab(t, "")
	u := s.AddUser(authA, "webpasskey", []string{"access"}, []string{osLogin})
	// A passkey registered on the proxy's Security page (the signed-in
	// user's calls to auth).
	b.addPasskey(u)
	if got := b.eval(`document.querySelector('#devices tr[data-device="laptop"] .kind').textContent.trim()`); got != "passkey" {
		t.Fatalf("the new device is a %q, want passkey", got)
	}
	b.open("/web/me")
	b.submit("#signout")

	// The passkey alone, at the proxy running apart.
	b.open("/web/login")
	b.clickTo("#passkey-signin", "/web/servers")
	b.open("/web/me")
	if got := b.eval(`document.getElementById("me-user").textContent.trim()`); got != u.Name {
		t.Fatalf("passwordless sign-in as %q, want %s", got, u.Name)
	}
	// Auth audited the sign-in as the web's, from the browser's address.
	testkit.WaitFor(t, "the passkey sign-in in the audit log", func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.UserLogin, User: u.Name, Limit: 20})
		for _, ev := range evs {
			if err == nil && ev.Success && ev.Fields["via"] == "web" && ev.Fields["method"] == "passkey" && ev.RemoteAddr == s.lab.Gateway() {
				return true
			}
		}
		return false
	})
	b.open("/web/me")
	b.submit("#signout")

	// Second factor: the password (checked by auth at the begin), then
	// the passkey instead of a code.
	b.open("/web/login")
	b.do(chromedp.SetValue(chromedp.CSS("#user"), u.Name), chromedp.SetValue(chromedp.CSS("#password"), "wrong password for sure"))
	b.do(chromedp.Click(chromedp.CSS("#passkey-2fa")))
	b.waitJS(`!document.getElementById("passkey-error").hidden`)
	if got := b.eval(`document.getElementById("passkey-error").textContent`); !strings.Contains(got, "wrong user name or password") {
		t.Fatalf("a wrong password with the passkey: %q", got)
	}
	b.do(chromedp.SetValue(chromedp.CSS("#password"), u.Password))
	b.clickTo("#passkey-2fa", "/web/servers")
	testkit.WaitFor(t, "the password+passkey sign-in in the audit log", func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.UserLogin, User: u.Name, Limit: 20})
		for _, ev := range evs {
			if err == nil && ev.Success && ev.Fields["via"] == "web" && ev.Fields["method"] == "password+passkey" && ev.RemoteAddr == s.lab.Gateway() {
				return true
			}
		}
		return false
	})
}

// TestSplitProxyWebRequirePasskey: with auth.require_passkey, a password
// sign-in at a proxy running apart of a user without a passkey leads to
// registering one there (the token auth gave the proxy with the refusal),
// then signing in with it; password and code alone no longer sign in.
func TestSplitProxyWebRequirePasskey(t *testing.T) {
	s, authA, _, b := splitPasskeyLab(t, "require_passkey: true, ")
	u := s.AddUser(authA, "webenrol", []string{"access"}, []string{osLogin})
	signin := func() {
		b.signInWithPassword(u)
	}
	signin()
	if got := b.eval(`(document.getElementById("notice")||{}).textContent||""`); !strings.Contains(got, "requires a passkey") {
		t.Fatalf("password sign-in without a passkey: %q at %s", got, b.eval(`location.href`))
	}
	b.do(chromedp.SetValue(chromedp.CSS("#passkey-name"), "laptop"))
	b.clickTo("#passkey-add", "/web/login?enrolled=1&next=%2Fweb%2Fservers")
	b.clickTo("#passkey-signin", "/web/servers")
	b.open("/web/me")
	if got := b.eval(`document.getElementById("me-user").textContent.trim()`); got != u.Name {
		t.Fatalf("sign-in with the new passkey as %q, want %s", got, u.Name)
	}
	b.submit("#signout")

	// The password and a code alone: refused, the passkey named.
	signin()
	if got := b.eval(`(document.getElementById("error")||{}).textContent||""`); !strings.Contains(got, "requires a passkey: sign in with it") {
		t.Fatalf("password sign-in with a passkey: %q", got)
	}
}

// TestSplitProxyWebSecurityPage: the Security page of a proxy running
// apart from auth (the signed-in user's calls to auth): new recovery codes
// after a fresh check with a passkey, a device removed (audited by auth),
// the last one kept with the reason shown, then a recovery code signs in
// in place of the authenticator's code, once.
func TestSplitProxyWebSecurityPage(t *testing.T) {
	s, authA, _, b := splitPasskeyLab(t, "")
	u := s.AddUser(authA, "websecurity", []string{"access"}, []string{osLogin})
	b.addPasskey(u)

	// New recovery codes, confirmed with the passkey.
	b.do(chromedp.Click(chromedp.CSS("#recovery-passkey")))
	b.waitAcross(`document.querySelectorAll("#recovery-codes li").length === 10`)
	codes := strings.Fields(b.eval(`Array.from(document.querySelectorAll("#recovery-codes li")).map(li => li.textContent.trim()).join(" ")`))
	if len(codes) != 10 || b.text("#recovery-left") != "10" {
		t.Fatalf("new recovery codes: %q, %s left", codes, b.text("#recovery-left"))
	}

	// The authenticator app removed; the passkey, now the only device,
	// cannot be.
	b.open("/web/security")
	b.submit(`#devices tr.device:not([data-device="laptop"]) button.remove`)
	if got := b.eval(`Array.from(document.querySelectorAll("#devices tr.device")).map(tr => tr.dataset.device).join(",")`); got != "laptop" {
		t.Fatalf("devices after removing the authenticator app: %q (at %s)", got, b.eval(`location.href`))
	}
	testkit.WaitFor(t, "mfa.delete in auth's audit log", func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.MFADelete, User: u.Name, Limit: 5})
		return err == nil && len(evs) > 0 && evs[0].Success
	})
	b.submit(`#devices tr[data-device="laptop"] button.remove`)
	if got := b.text("#error"); !strings.Contains(got, "only MFA device") {
		t.Fatalf("removing the last device: %q", got)
	}
	if got := b.eval(`String(document.querySelectorAll("#devices tr.device").length)`); got != "1" {
		t.Fatalf("devices after refusing to remove the last: %s", got)
	}
	b.open("/web/me")
	b.submit("#signout")

	// A recovery code in place of the code: once.
	b.signInWithCode(u, func() string { return codes[0] })
	b.waitJS(`location.pathname === "/web/servers"`)
	b.open("/web/security")
	if got := b.text("#recovery-left"); got != "9" {
		t.Fatalf("recovery codes left after one was used: %q", got)
	}
	b.open("/web/me")
	b.submit("#signout")
	b.signInWithCode(u, func() string { return codes[0] })
	if got := b.text("#error"); !strings.Contains(got, "Wrong user name, password or code") {
		t.Fatalf("a spent recovery code: %q at %s", got, b.eval(`location.href`))
	}
}

// waitCallback waits, across the navigation (which interrupts a poll),
// for the CLI's loopback callback page saying text, or fails with the
// error the hand-off page shows instead.
func (b *splitBrowser) waitCallback(text string) {
	b.t.Helper()
	at := `location.hostname === "127.0.0.1" && document.body.textContent.includes(` + quoted(text) + `)`
	b.waitAcross("(" + at + ") || " + passkeyErrorShown)
	if !b.is(at) {
		b.t.Fatalf("the hand-off page at %s: %q", b.eval(`location.href`), b.text("#passkey-error"))
	}
}

// TestSplitProxyPasskeyHandoff: `warden login --passkey` (the warden
// binary, --browser none) through a proxy running apart from auth is
// finished by the browser at that proxy's passkey page: auth takes the
// hand-off's state (proxy-only /v1/proxies/passkey-login/handoff) and the
// browser goes on to the CLI's loopback callback; the CLI gets
// certificates that work, and auth audits the sign-in via "cli" from the
// browser's address. With them, `warden mfa recovery-codes --passkey`
// is confirmed at the proxy's /web/mfa page. The sign-in page's state,
// spent, signs nobody in again.
func TestSplitProxyPasskeyHandoff(t *testing.T) {
	s, authA, proxyA, b := splitPasskeyLab(t, "")
	u := s.AddUser(authA, "clipasskey", []string{"access"}, []string{osLogin})

	// A passkey, registered at the proxy's Security page.
	b.addPasskey(u)
	b.open("/web/me")
	b.submit("#signout")

	// warden login --passkey through the proxy; the printed page opened
	// at the proxy (the user's browser reaches it as origin).
	home := t.TempDir()
	cliProc := startBackground(t, WardenBinary, "--home", home, "login", "--proxy", proxyA.Addr(), "--ca-pin", s.pin,
		"--passkey", "--browser", "none")
	var state string
	testkit.WaitFor(t, "the sign-in URL", func() bool {
		m := regexp.MustCompile(`(?m)^\s+https://\S+/web/login/passkey\?state=(\S+)$`).FindStringSubmatch(cliProc.err.String())
		if m != nil {
			state = m[1]
		}
		return m != nil
	})
	b.open("/web/login/passkey?state=" + state)
	b.do(chromedp.Click(chromedp.CSS("#passkey-signin")))
	b.waitCallback(`sign-in received`)
	select {
	case code := <-cliProc.done:
		if code != 0 || !strings.Contains(cliProc.out.String(), "User:    "+u.Name) {
			t.Fatalf("warden login --passkey: exit %d\n%s\n%s", code, cliProc.out.String(), cliProc.err.String())
		}
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatalf("warden login --passkey did not end:\n%s\n%s", cliProc.out.String(), cliProc.err.String())
	}
	// Its certificates work through the proxy.
	if r := Run(t, nil, WardenBinary, "--home", home, "mfa", "ls"); r.Code != 0 || !strings.Contains(r.Stdout, "laptop") {
		t.Fatalf("warden mfa ls with the passkey's certificates: %s", r)
	}
	testkit.WaitFor(t, "the CLI's passkey sign-in in the audit log", func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.UserLogin, User: u.Name, Limit: 20})
		for _, ev := range evs {
			if err == nil && ev.Success && ev.Fields["via"] == "cli" && ev.Fields["method"] == "passkey" && ev.RemoteAddr == s.lab.Gateway() {
				return true
			}
		}
		return false
	})

	// `warden mfa recovery-codes --passkey` with those certificates: the
	// fresh MFA check at the proxy's /web/mfa page (proxy-only
	// /v1/proxies/mfa-handoff/begin and /finish), then the new codes.
	rc := startBackground(t, WardenBinary, "--home", home, "mfa", "recovery-codes", "--passkey", "--browser", "none")
	var mfaState string
	testkit.WaitFor(t, "the MFA page's URL", func() bool {
		m := regexp.MustCompile(`(?m)^\s+https://\S+/web/mfa\?state=(\S+)$`).FindStringSubmatch(rc.out.String() + rc.err.String())
		if m != nil {
			mfaState = m[1]
		}
		return m != nil
	})
	b.open("/web/mfa?state=" + mfaState)
	b.do(chromedp.Click(chromedp.CSS("#mfa-confirm")))
	b.waitCallback(`received`)
	select {
	case code := <-rc.done:
		codes := regexp.MustCompile(`(?m)^\s+([a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5})$`).FindAllString(rc.out.String(), -1)
		if code != 0 || len(codes) != 10 {
			t.Fatalf("warden mfa recovery-codes --passkey: exit %d\n%s\n%s", code, rc.out.String(), rc.err.String())
		}
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatalf("warden mfa recovery-codes --passkey did not end:\n%s\n%s", rc.out.String(), rc.err.String())
	}

	// The state is spent: the page again is refused, nobody signed in.
	b.open("/web/login/passkey?state=" + state)
	b.do(chromedp.Click(chromedp.CSS("#passkey-signin")))
	b.waitJS(`!document.getElementById("passkey-error").hidden`)
	if got := b.eval(`document.getElementById("passkey-error").textContent`); !strings.Contains(got, "already used") {
		t.Fatalf("a spent hand-off state: %q", got)
	}
}
