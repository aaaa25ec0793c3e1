//go:build integration

package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/service"
)

// sessionCookie returns the browser's session cookie value.
func (b *browser) sessionCookie() string {
	b.t.Helper()
	var v string
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{})
		if err != nil {
			return err
		}
		for _, c := range res.Cookies {
			if c.Name == "__Host-warden_session" {
				v = c.Value
			}
		}
		return nil
	}))
	return v
}

// TestBrowserSessionSurvivesRestart: browser sessions live in auth's
// storage, sealed and keyed by a hash of the cookie: a proxy restart keeps
// a person signed in (and the web terminal working); sign-out removes
// the session for good and is audited.
func TestBrowserSessionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	c := clustertest.New(t, clustertest.Options{DataDir: dir, NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	dave := c.AddUser("dave", []string{"dev"}, []string{"dave"})
	addr := c.ProxyAddr()
	b := newBrowser(t, "https://"+addr)
	b.open("/web/login")
	b.signin(dave)
	if got := b.text("#whoami"); got != "dave" {
		t.Fatalf("signed in as %q", got)
	}
	cookie := b.sessionCookie()
	if cookie == "" {
		t.Fatal("no session cookie")
	}
	sum := sha256.Sum256([]byte(cookie))
	key := hex.EncodeToString(sum[:])
	stored, err := c.Proc.Auth().GetWebSession(context.Background(), key)
	if err != nil {
		t.Fatalf("the session is not in storage under the hash of its cookie: %v", err)
	}
	if strings.Contains(string(stored), cookie) || strings.Contains(string(stored), "dave") {
		t.Fatal("the stored session shows its cookie or its user in the clear")
	}

	// Restart the whole process on the same address and data.
	c.Proc.Close()
	c2 := clustertest.New(t, clustertest.Options{DataDir: dir, NodeLabels: map[string]string{"env": "dev"},
		Proxy: service.ProxyConfig{Listen: addr}})
	b.open("/web/me")
	if got := b.text("#me-roles"); !strings.Contains(got, "dev") {
		t.Fatalf("after a restart, who am I shows roles %q (at %s)", got, b.location())
	}
	// The session's SSH identity survived too: the terminal works.
	clustertest.EnsureOSUser(t, "dave")
	b.open("/web/servers/node1/terminal?login=dave")
	b.waitJS(`document.getElementById("term-status").textContent === "connected"`)
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("$")`)

	// Sign out: the session is gone from storage and the event audited.
	b.open("/web/me")
	b.submit("#signout")
	if _, err := c2.Proc.Auth().GetWebSession(context.Background(), key); err == nil {
		t.Fatal("the session is still stored after sign-out")
	}
	evs, err := c2.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.UserLogout, User: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Fields["via"] != "web" || evs[0].Fields["session"] != key[:16] {
		t.Fatalf("sign-out events: %+v", evs)
	}
	logins, err := c2.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.UserLogin, User: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	web := 0
	for _, e := range logins {
		if e.Fields["via"] == "web" {
			web++
		}
	}
	if web != 1 {
		t.Fatalf("%d web sign-ins audited, want 1", web)
	}
	b.open("/web/me")
	if loc := b.location(); !strings.Contains(loc, "/web/login?next=") {
		t.Fatalf("after sign-out /web/me went to %s", loc)
	}
}
