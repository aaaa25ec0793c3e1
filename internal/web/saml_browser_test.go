//go:build integration

package web_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/testkit"
)

// TestBrowserSAMLSignin: the sign-in page's "Sign in with corp" button for
// a saml connector, in headless Chromium: Warden's redirect to a real SAML
// IdP, its login form, its auto-posted response to the proxy's ACS, and
// back to the servers page with a session of the IdP's user.
func TestBrowserSAMLSignin(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeName: "node1"})
	ping, err := c.Admin.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	idp := clustertest.StartSAMLIdP(t, clustertest.SAMLUser{Name: "alice", Email: "alice@example.com", Surname: "alice", Groups: []string{"ops-team"}})
	c.ApplyRoles(`kind: role
metadata: {name: ops}
spec:
  allow:
    logins: ['{{external.logins}}']
    node_labels: {'*': '*'}
---
kind: saml
metadata: {name: corp}
spec:
  idp_metadata_url: ` + idp.URL + `/metadata
  username_attribute: uid
  attributes_to_roles: [{attribute: eduPersonAffiliation, value: 'ops-*', roles: [ops]}]
  traits: {logins: sn}
`)
	idp.Register(t, ping.TLSCA, "https://"+c.ProxyAddr()+"/v1/sso/saml/corp/metadata")
	b := newBrowser(t, "https://"+c.ProxyAddr())
	b.open("/web/login?next=/web/servers")
	if got := b.text(`a[href^="/web/login/sso/corp"]`); !strings.Contains(got, "Sign in with corp") {
		t.Fatalf("the SSO button reads %q", got)
	}
	b.do(chromedp.Click(chromedp.CSS(`a[href^="/web/login/sso/corp"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=user]`)))
	if loc, _ := url.Parse(b.location()); loc == nil || "http://"+loc.Host != idp.URL {
		t.Fatalf("the button led to %s, not the IdP", b.location())
	}
	b.do(chromedp.SendKeys(chromedp.CSS(`input[name=user]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "alice-pw"),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)))
	testkit.WaitFor(t, "the servers page", func() bool { return strings.HasSuffix(b.location(), "/web/servers") })
	if got := b.text("#servers .node .name"); got != "node1" {
		t.Fatalf("servers page lists %q, want node1", got)
	}
	if who := eval[string](b, `document.body.innerText`); !strings.Contains(who, "alice") {
		t.Fatalf("after the SAML sign-in, the page does not name alice: %s", who)
	}
}
