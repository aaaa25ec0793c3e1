//go:build integration

package web_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/node"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/testkit"
)

var screenshots = flag.Bool("screenshots", false, "write a screenshot of every page into docs/screenshots")

func TestMain(m *testing.M) {
	// The node re-executes the test binary for its SFTP child.
	if node.MaybeRunChild() {
		return
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// needWardenBinary builds cmd/warden once, for OpenSSH's ProxyCommand.
func needWardenBinary(t *testing.T) {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "warden-bin-"); binErr == nil {
			binErr = clustertest.BuildWarden(binDir)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
}

// browser is a headless Debian Chromium driven over the DevTools protocol.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	// shots is where screenshots go.
	shots string
}

func chromiumPath(t *testing.T) string {
	for _, p := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("no chromium: install it (apt-get install -y --no-install-recommends chromium); .ci/run does")
	return ""
}

// newBrowser starts Chromium for the test. The cluster's TLS certificate
// comes from its own CA, which this fresh profile does not trust.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	testkit.ShareNetwork(t) // see testkit.ChangeNetwork
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 800),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	shots := t.TempDir()
	if *screenshots {
		shots = filepath.Join("..", "..", "docs", "screenshots")
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &browser{t: t, ctx: ctx, base: base, shots: shots}
}

// context returns another browser on the same Chromium: its own cookies
// and storage (a second person).
func (b *browser) context() *browser {
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("new browser context: %v", err)
	}
	nb := *b
	nb.ctx = ctx
	return &nb
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.location())
	}
}

func (b *browser) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base + path))
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v (at %s)", sel, err, b.location())
	}
	return s
}

func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// submit clicks a button that submits a form and waits for the next page.
func (b *browser) submit(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("submit %s: %v (at %s)", sel, err, b.location())
	}
}

func (b *browser) fill(sel, value string) {
	b.t.Helper()
	b.do(chromedp.SetValue(chromedp.CSS(sel), value))
}

// typeText types into the focused element as a keyboard would insert
// text (SendKeys's synthetic key events reach xterm twice).
func (b *browser) typeText(text string) {
	b.t.Helper()
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: text})
		return err
	}))
}

func (b *browser) pressEnter() {
	b.t.Helper()
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeKeyDown, input.DispatchKeyEventTypeKeyUp} {
			p := input.DispatchKeyEventParams{Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13}
			if typ == input.DispatchKeyEventTypeKeyDown {
				p.Text = "\r"
			}
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, p); err != nil {
				return err
			}
		}
		return nil
	}))
}

// waitJS waits until a JavaScript expression is truthy.
func (b *browser) waitJS(expr string) {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(patience.Left(b.t)))); err != nil {
		b.t.Fatalf("waiting for %s: %v (at %s)", expr, err, b.location())
	}
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) signin(u *clustertest.User) {
	b.t.Helper()
	b.fill("#user", u.Name)
	b.fill("#password", u.Password)
	b.fill("#otp", u.NextOTP(b.t))
	b.submit("#signin")
}

// xss is the attempt every user-controlled string makes.
const xss = `<script>window.__xss=1</script>"onmouseover="window.__xss=2" <img src=x onerror="window.__xss=3">`

// TestBrowser walks the web UI in a real browser against a real cluster:
// sign up from an invite with TOTP, sign in, find the node by label, file
// an access request and approve it as another user from the notification
// link, escape hostile labels and reasons, and end the session of a user
// who is removed.
func TestBrowser(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev", "note": xss}})
	c.ApplyRoles(roles)
	ctx := context.Background()
	base := "https://" + c.ProxyAddr()
	b := newBrowser(t, base)

	// Sign up from the invite link the CLI prints.
	inv, err := c.Admin.CreateUser(ctx, auth.CreateUserRequest{Name: "alice", Roles: []string{"dev"}, Logins: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(inv.URL, base+"/web/invite/") {
		t.Fatalf("invite URL %q is not on the proxy's /web/invite/", inv.URL)
	}
	b.do(chromedp.Navigate(inv.URL))
	if got := b.text("#invite-user"); got != "alice" {
		t.Fatalf("invite page names %q, want alice", got)
	}
	secret := b.text("#totp-secret")
	if n := eval[float64](b, `document.querySelector("img.qr").naturalWidth`); n == 0 {
		t.Fatal("the QR code image did not load")
	}
	b.screenshot("invite")
	alice := &clustertest.User{Name: "alice", Password: "a long web password 1", TOTPSecret: strings.TrimSpace(secret)}
	b.fill("#password", alice.Password)
	b.fill("#password2", alice.Password)
	b.fill("#otp", alice.NextOTP(t))
	b.submit("#signup")
	if got := b.text("#notice"); !strings.Contains(got, "signed up") {
		t.Fatalf("after signup: notice %q", got)
	}
	b.screenshot("signin")

	// Sign in; the servers page shows the node, its hostile label as text.
	b.signin(alice)
	if loc := b.location(); !strings.HasSuffix(loc, "/web/servers") {
		t.Fatalf("after sign-in at %s, want /web/servers", loc)
	}
	if got := b.text("#servers .node .name"); got != "node1" {
		t.Fatalf("servers page lists %q, want node1", got)
	}
	labels := b.text("#servers .node .labels")
	if !strings.Contains(labels, "env=dev") || !strings.Contains(labels, "<script>window.__xss=1</script>") {
		t.Fatalf("labels %q do not show env=dev and the hostile label as text", labels)
	}
	b.screenshot("servers")

	// Filter by label and by free text, with and without htmx.
	b.open("/web/servers?q=env%3Dprod")
	if got := b.text("#no-servers"); got == "" {
		t.Fatal("env=prod should match nothing for alice")
	}
	b.open("/web/servers?q=env%3Ddev")
	if got := b.text("#servers .node .name"); got != "node1" {
		t.Fatalf("env=dev lists %q", got)
	}
	eval[bool](b, `(document.getElementById("q").value = "") === ""`)
	b.do(chromedp.SendKeys(chromedp.CSS("#q"), "nomatch"))
	b.do(chromedp.WaitVisible(chromedp.CSS("#no-servers")))
	if loc := b.location(); !strings.Contains(loc, "q=nomatch") {
		t.Fatalf("htmx search did not update the URL: %s", loc)
	}
	eval[bool](b, `(document.getElementById("q").value = "") === ""`)
	b.do(chromedp.SendKeys(chromedp.CSS("#q"), "node"))
	b.do(chromedp.WaitVisible(chromedp.CSS("#servers")))

	// A terminal on the node, through the proxy as alice: type a command,
	// see its output.
	clustertest.EnsureOSUser(t, "alice")
	b.open("/web/servers/node1/terminal?login=alice")
	b.waitJS(`document.getElementById("term-status").textContent === "connected"`)
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("$")`) // the prompt
	b.typeText("echo web-$((6*7))")
	b.pressEnter()
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("web-42")`)
	// xterm's own styles were admitted by the page's nonce.
	if ok := eval[bool](b, `[...document.querySelectorAll("style")].every(s => s.sheet !== null)`); !ok {
		t.Fatal("a <style> element of the terminal was blocked by the CSP")
	}
	b.screenshot("terminal")

	// Who am I.
	b.open("/web/me")
	if got := b.text("#me-roles"); !strings.Contains(got, "dev") {
		t.Fatalf("who am I roles %q", got)
	}
	if got := b.text("#me-logins"); !strings.Contains(got, "alice") {
		t.Fatalf("who am I logins %q", got)
	}
	b.screenshot("me")

	// File an access request with a hostile reason.
	b.open("/web/requests")
	b.do(chromedp.Click(chromedp.CSS("#new-request summary")))
	b.fill("#req-roles", "prod-admin")
	b.fill("#req-reason", xss)
	b.fill("#req-duration", "30m")
	b.screenshot("requests")
	b.submit("#req-create")
	loc := b.location()
	id := loc[strings.LastIndex(loc, "/")+1:]
	if !strings.Contains(loc, "/web/requests/") || id == "" {
		t.Fatalf("after creating a request at %s", loc)
	}
	if got := b.text("#req-reason"); got != xss {
		t.Fatalf("reason shown as %q, want the text %q", got, xss)
	}
	if got := b.text("#req-state"); got != "PENDING" {
		t.Fatalf("state %q", got)
	}

	// A reviewer opens the notification link in a browser of their own,
	// signs in and lands on the request, then approves it.
	bob := c.AddUser("bob", []string{"reviewer", "auditor"}, nil)
	rb := b.context()
	rb.open("/web/requests/" + id)
	if loc := rb.location(); !strings.Contains(loc, "/web/login?next=") {
		t.Fatalf("the request link without a session went to %s, want the sign-in page", loc)
	}
	rb.signin(bob)
	if loc := rb.location(); !strings.HasSuffix(loc, "/web/requests/"+id) {
		t.Fatalf("after sign-in the reviewer is at %s, want the request", loc)
	}
	if got := rb.text("#req-reason"); got != xss {
		t.Fatalf("reviewer sees reason %q", got)
	}
	rb.fill("#review-comment", "ok for the migration "+xss)
	rb.screenshot("request")
	rb.submit("#approve")
	if got := rb.text("#req-state"); got != "APPROVED" {
		t.Fatalf("after approval the state is %q (error: %s)", got, eval[string](rb, `(document.getElementById("error")||{}).textContent||""`))
	}
	if got := rb.text("#reviews"); !strings.Contains(got, "bob approved") || !strings.Contains(got, xss) {
		t.Fatalf("reviews %q", got)
	}
	// The link followed from another site (a chat message) opens the
	// request directly for a signed-in reviewer, although the browser does
	// not send a SameSite=Strict cookie with a cross-site navigation.
	chat := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<a id="link" href="%s/web/requests/%s">New access request</a>`, base, id)
	}))
	defer chat.Close()
	rb.do(chromedp.Navigate(strings.Replace(chat.URL, "127.0.0.1", "localhost", 1)))
	rb.do(chromedp.Click(chromedp.CSS("#link")), chromedp.WaitVisible(chromedp.CSS("#req-state, #signin-form")))
	if loc := rb.location(); !strings.HasSuffix(loc, "/web/requests/"+id) {
		t.Fatalf("the link from another site went to %s, want the request page", loc)
	}
	b.open("/web/requests/" + id)
	if got := b.text("#req-state"); got != "APPROVED" {
		t.Fatalf("the requester sees state %q", got)
	}

	// The auditor's audit log, filtered by user and event type.
	rb.open("/web/audit?user=alice&type=access_request.create")
	if got := rb.text("#events .event td:nth-child(3)"); got != "access_request.create" {
		t.Fatalf("audit filter shows %q", got)
	}
	n := eval[float64](rb, `document.querySelectorAll("#events .event").length`)
	if n != 1 {
		t.Fatalf("audit filter shows %v events, want 1", n)
	}
	rb.screenshot("audit")
	rb.open("/web/recordings")
	rb.screenshot("recordings")

	// Nothing hostile ran anywhere.
	for _, br := range []*browser{b, rb} {
		if v := eval[bool](br, `window.__xss !== undefined`); v {
			t.Fatal("a hostile string ran as script")
		}
	}

	// A removed user's browser session stops working on the next request.
	if err := c.Admin.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	b.open("/web/servers")
	if got := b.text("#error"); !strings.Contains(got, "session has ended") || !strings.Contains(got, "alice") {
		t.Fatalf("after removal: %q", got)
	}
	if n := eval[float64](b, `document.querySelectorAll("#servers").length`); n != 0 {
		t.Fatal("a removed user still sees the servers page")
	}
	// Gone for good, not only refused once.
	b.open("/web/me")
	if loc := b.location(); !strings.Contains(loc, "/web/login?next=") {
		t.Fatalf("removed user's next request went to %s, want sign-in", loc)
	}
}
