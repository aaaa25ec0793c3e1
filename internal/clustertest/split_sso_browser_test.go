//go:build integration

package clustertest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/testkit"
)

// TestSplitProxyWebSAML: single sign-on through a real SAML IdP
// (crewjam/saml's samlidp) at the web UI of a proxy running apart from
// auth, in a real browser (headless Chromium): the sign-in page's "Sign
// in with corp" button leads to the IdP (proxy → auth, as the proxy, for
// the browser's address: BeginSSO), the IdP's form posts the assertion to
// the proxy's ACS (forwarded to auth), and the proxy fetches the outcome
// (ResultOIDC) and lands the user signed in: the servers page lists the
// node the mapped role allows. A user the IdP maps to no role is refused
// with that reason and is not signed in. The IdP's metadata is given to
// auth inline (auth, on a host of its own, does not reach the test's
// loopback), and the ACS is the proxy's.
func TestSplitProxyWebSAML(t *testing.T) {
	s, authA, proxyA := newSplitWithNodeA(t)
	ping, err := authA.admin.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	idp := StartSAMLIdP(t, SAMLUser{Name: "alice", Email: "alice@example.com", Surname: osLogin, Groups: []string{"staff", "ops-team"}},
		SAMLUser{Name: "bob", Email: "bob@example.com", Groups: []string{"sales"}})
	resp, err := http.Get(idp.URL + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("IdP metadata: %d %s", resp.StatusCode, md)
	}
	base := "https://" + proxyA.Addr() + "/v1/sso/saml/corp"
	conn := ssoOpsRole + `kind: saml
metadata: {name: corp}
spec:
  idp_metadata_xml: ` + quoted(string(md)) + `
  entity_id: ` + base + `/metadata
  acs_url: ` + base + `/acs
  username_attribute: uid
  attributes_to_roles: [{attribute: eduPersonAffiliation, value: 'ops-*', roles: [ops]}]
  traits: {logins: sn}
`
	s.apply(authA, "apply the saml connector", conn)
	idp.Register(t, ping.TLSCA, base+"/metadata")
	s.waitNode(authA, "node-a")

	b := newSplitBrowser(t, "https://"+proxyA.Addr())
	signin := func(user string) {
		t.Helper()
		startSSO(t, b, idp.URL, "password")
		if loc, _ := url.Parse(b.eval(`location.href`)); loc == nil || "http://"+loc.Host != idp.URL {
			t.Fatalf("the button led to %s, not the IdP: %q", b.eval(`location.href`), b.text("#error"))
		}
		b.do(chromedp.SendKeys(chromedp.CSS(`input[name=user]`), user), chromedp.SendKeys(chromedp.CSS(`input[name=password]`), user+"-pw"),
			chromedp.Submit(chromedp.CSS(`input[name=password]`)))
	}

	// Bob's attributes map to no role: refused, with that reason, and not
	// signed in.
	ssoRefused(t, b, proxyA.Addr(), func() { signin("bob") })

	// Alice: signed in with the mapped role; the servers page lists node-a.
	signin("alice")
	testkit.WaitFor(t, "the servers page", func() bool {
		if aborted(b) {
			signin("alice")
			return false
		}
		return b.eval(`location.href`) == "https://"+proxyA.Addr()+"/web/servers" && b.eval(`document.readyState`) == "complete"
	})
	aliceSeesNodeA(t, b)
}

// TestSplitProxyWebOIDC: single sign-on through a real OIDC provider
// (hashicorp/cap's test provider, with a token endpoint that checks the
// client secret and the PKCE verifier) at the web UI of a proxy running
// apart from auth, in a real browser (headless Chromium): the "Sign in
// with corp" button leads to the IdP's form (the proxy's proxy-only
// begin at auth), the IdP returns the browser to the proxy's callback
// (forwarded to auth, which exchanges the code), and the proxy fetches
// the outcome: the user lands signed in, the servers page listing the
// node the mapped role allows. A user whose claims map to no role is
// refused with that reason and not signed in. The IdP is on the test's
// loopback: auth's host reaches it at the same address (forwardLoopback),
// as an issuer over plain HTTP must be on a loopback address.
func TestSplitProxyWebOIDC(t *testing.T) {
	s, authA, proxyA := newSplitWithNodeA(t)
	redirect := "https://" + proxyA.Addr() + "/v1/sso/oidc/callback"
	idp := startSSOIdP(t, redirect)
	for _, u := range []string{idp.tp.Addr(), idp.tokenURL} {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		authA.host.forwardLoopback(t, pu.Host)
	}
	secretFile := filepath.Join(s.dir, "oidc-secret")
	if err := os.WriteFile(secretFile, []byte(ssoSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := fmt.Sprintf(ssoOpsRole+`kind: oidc
metadata: {name: corp}
spec:
  issuer_url: %s
  client_id: warden
  client_secret_file: %s
  redirect_url: %s
  claims_to_roles:
  - {claim: groups, value: 'ops-*', roles: [ops]}
  traits: {logins: unix_login}
`, idp.tp.Addr(), secretFile, redirect)
	s.apply(authA, "apply the oidc connector", conn)
	s.waitNode(authA, "node-a")

	b := newSplitBrowser(t, "https://"+proxyA.Addr())
	signin := func(user, password string) {
		t.Helper()
		startSSO(t, b, idp.tp.Addr(), "psw")
		loc, _ := url.Parse(b.eval(`location.href`))
		if loc == nil || "http://"+loc.Host != idp.tp.Addr() || loc.Query().Get("code_challenge_method") != "S256" {
			t.Fatalf("the button led to %s, not the IdP with PKCE: %q", b.eval(`location.href`), b.text("#error"))
		}
		// The token endpoint's check: the browser carried this challenge.
		idp.mu.Lock()
		idp.challenges[loc.Query().Get("code_challenge")] = true
		idp.mu.Unlock()
		b.do(chromedp.SendKeys(chromedp.CSS(`input[name=uname]`), user), chromedp.SendKeys(chromedp.CSS(`input[name=psw]`), password),
			chromedp.Submit(chromedp.CSS(`input[name=psw]`)))
	}

	// Bob's claims map to no role: refused, with that reason.
	ssoRefused(t, b, proxyA.Addr(), func() { signin("bob", "bob-pw") })

	// Alice: signed in with the mapped role; the servers page lists node-a.
	signin("alice", "alice-pw")
	testkit.WaitFor(t, "the servers page", func() bool {
		if aborted(b) {
			signin("alice", "alice-pw")
			return false
		}
		return (b.eval(`location.href`) == "https://"+proxyA.Addr()+"/web/servers" && b.eval(`document.readyState`) == "complete") || b.text("#error") != ""
	})
	if got := b.eval(`location.pathname`); got != "/web/servers" {
		t.Fatalf("alice's SSO sign-in ended at %s: %q", b.eval(`location.href`), b.text("#error"))
	}
	aliceSeesNodeA(t, b)
}

// startSSO has a new person at the browser (no session at the IdP or the
// proxy) click "Sign in with corp" at the proxy's sign-in page, and waits
// for the IdP's form (at idpURL, with its password field) or the proxy's
// page saying why not. Chromium aborts a load when it sees the machine's
// network change (other tests' interfaces): the button is then clicked
// again.
func startSSO(t *testing.T, b *splitBrowser, idpURL, passwordField string) {
	t.Helper()
	b.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.ClearBrowserCookies, cdp.Empty{})
		return err
	}))
	b.open("/web/login?next=/web/servers")
	if aborted(b) {
		b.open("/web/login?next=/web/servers")
	}
	if got := b.text(`a[href^="/web/login/sso/corp"]`); !strings.Contains(got, "Sign in with corp") {
		t.Fatalf("the SSO button reads %q", got)
	}
	b.do(chromedp.Click(chromedp.CSS(`a[href^="/web/login/sso/corp"]`)))
	testkit.WaitFor(t, "the IdP's sign-in form", func() bool {
		if b.is(errorPage) {
			t.Logf("the load after the SSO button was aborted: clicking again")
			b.open("/web/login?next=/web/servers")
			b.do(chromedp.Click(chromedp.CSS(`a[href^="/web/login/sso/corp"]`)))
			return false
		}
		return b.text("#error") != "" || (strings.HasPrefix(b.eval(`location.href`), idpURL) &&
			b.eval(`String(!!document.querySelector("input[name=`+passwordField+`]"))`) == "true")
	})
}

// ssoRefused signs bob in (his claims or attributes map to no role) and
// checks that he is back at the proxy's sign-in page with that reason,
// and not signed in.
func ssoRefused(t *testing.T, b *splitBrowser, proxyAddr string, signin func()) {
	t.Helper()
	signin()
	testkit.WaitFor(t, "back at the proxy's sign-in page", func() bool {
		if aborted(b) {
			signin()
			return false
		}
		return strings.HasPrefix(b.eval(`location.href`), "https://"+proxyAddr+"/web/login") && b.text("#error") != ""
	})
	if got := b.text("#error"); !strings.Contains(got, "map to no role") {
		t.Fatalf("bob's refusal: %q", got)
	}
	b.open("/web/me")
	if got := b.eval(`location.pathname`); got != "/web/login" {
		t.Fatalf("after bob's refusal, /web/me is at %s (signed in?)", got)
	}
}

// aliceSeesNodeA checks, once alice's sign-in has landed on the servers
// page, that it lists node-a (else, as node-a's tunnel may reach the
// proxy's list later, the page loaded again) and that she is alice.
func aliceSeesNodeA(t *testing.T, b *splitBrowser) {
	t.Helper()
	testkit.WaitFor(t, "node-a on alice's servers page", func() bool {
		if b.text("#servers .node .name") == "node-a" {
			return true
		}
		b.open("/web/servers")
		return b.text("#servers .node .name") == "node-a"
	})
	b.open("/web/me")
	if got := b.eval(`document.getElementById("me-user").textContent.trim()`); got != "alice" {
		t.Fatalf("signed in as %q, want alice", got)
	}
}

// aborted says whether Chromium aborted the page's load (it does when the
// machine's network changes, e.g. another test's interfaces): the single
// sign-on, whose one-time state may be spent, is then started again.
func aborted(b *splitBrowser) bool {
	if b.is(errorPage) {
		b.t.Logf("the browser's load was aborted: signing in again")
		return true
	}
	return false
}
