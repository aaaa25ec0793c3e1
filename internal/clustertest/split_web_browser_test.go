//go:build integration

package clustertest

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/testkit"
)

// splitBrowser is a headless Debian Chromium at a proxy's web UI.
type splitBrowser struct {
	t    *testing.T
	ctx  context.Context
	base string
}

// newSplitBrowser starts Chromium once the lab's hosts are up: the lab
// holds the network lock alone (no other browser test runs meanwhile),
// and no interface changes until the test ends (the browser is closed
// before the lab's interfaces are removed: cleanups run last first).
func newSplitBrowser(t *testing.T, base string) *splitBrowser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("no chromium: install it (apt-get install -y --no-install-recommends chromium); .ci/run does")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1280, 800))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &splitBrowser{t: t, ctx: ctx, base: base}
}

func (b *splitBrowser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// open loads a page. Chromium aborts a load when it sees the machine's
// network change (the lab's fresh interfaces settling their addresses):
// such a load is tried again.
func (b *splitBrowser) open(path string) {
	b.t.Helper()
	var err error
	testkit.WaitFor(b.t, "load "+path, func() bool {
		ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
		defer cancel()
		err = chromedp.Do(ctx, chromedp.Navigate(b.base+path))
		return err == nil || !strings.Contains(err.Error(), "ERR_NETWORK_CHANGED")
	})
	if err != nil {
		b.t.Fatalf("load %s: %v", path, err)
	}
}

// signInWithPassword fills the sign-in form with u's password and a
// fresh code and submits it. Chromium may abort the load when the lab's
// fresh network interfaces settle (ERR_NETWORK_CHANGED): the form is then
// filled again with a new code (a code is accepted once) and sent again.
func (b *splitBrowser) signInWithPassword(u *User) {
	b.t.Helper()
	b.signInWithCode(u, func() string { return u.NextOTP(b.t) })
}

// signInWithCode is signInWithPassword with the codes code gives (a
// recovery code in place of the authenticator's).
func (b *splitBrowser) signInWithCode(u *User, code func() string) {
	b.t.Helper()
	testkit.WaitFor(b.t, "sign-in with password and code", func() bool {
		b.open("/web/login")
		b.do(chromedp.SetValue(chromedp.CSS("#user"), u.Name), chromedp.SetValue(chromedp.CSS("#password"), u.Password),
			chromedp.SetValue(chromedp.CSS("#otp"), code()))
		ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
		defer cancel()
		if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS("#signin"))); err != nil {
			if strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
				return false
			}
			b.t.Fatalf("submit #signin: %v", err)
		}
		return true
	})
}

func (b *splitBrowser) submit(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("submit %s: %v", sel, err)
	}
}

// errorPage is true on Chromium's error page: a load that failed.
const errorPage = `location.protocol === "chrome-error:"`

// is says whether the JavaScript expression expr is true now (false when
// it cannot be evaluated, as during a navigation).
func (b *splitBrowser) is(expr string) bool {
	b.t.Helper()
	return b.eval("String(("+expr+"))") == "true"
}

// waitAcross waits until expr is true, across navigations (which end a
// chromedp poll).
func (b *splitBrowser) waitAcross(expr string) {
	b.t.Helper()
	testkit.WaitFor(b.t, expr, func() bool { return b.is(expr) })
}

// waitJS waits until a JavaScript expression is truthy.
func (b *splitBrowser) waitJS(expr string) {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(b.t))
	defer cancel()
	// Chromium's error page (a load that failed) ends the wait at once.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("("+expr+") || "+errorPage, chromedp.WithPollingTimeout(patience.Left(b.t)))); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		b.t.Fatalf("waiting for %s: %v (at %s)", expr, err, loc)
	}
	if b.is(errorPage) {
		b.t.Fatalf("waiting for %s: the browser failed to load %s", expr, b.failedURL())
	}
}

// typeLine types text into the focused terminal as a keyboard inserts
// it, then Enter.
func (b *splitBrowser) typeLine(text string) {
	b.t.Helper()
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: text}); err != nil {
			return err
		}
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

// TestSplitProxyWebBrowser: a real browser (headless Chromium) at the web
// UI of a proxy running apart from auth, each a process on a host of its
// own: sign in with password and TOTP, find the node on the servers page,
// open its web terminal (the page's own script, xterm.js, over the
// WebSocket) and run a command; a lock through auth ends the terminal,
// which shows the lock's message.
func TestSplitProxyWebBrowser(t *testing.T) {
	s, authA, proxyA := newSplitWithNodeA(t)
	u := s.AddUser(authA, "webbrowser", []string{"access"}, []string{osLogin})

	b := newSplitBrowser(t, "https://"+proxyA.Addr())
	b.signInWithPassword(u)
	b.waitJS(`location.pathname === "/web/servers"`)
	// The node's tunnel may reach the proxy after the page first loads.
	testkit.WaitFor(t, "node-a on the servers page", func() bool {
		b.open("/web/servers")
		ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(t))
		defer cancel()
		found, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.body.textContent.includes("node-a")`))
		return err == nil && found
	})
	b.open("/web/servers/node-a/terminal?login=" + osLogin)
	b.waitJS(`document.getElementById("term-status").textContent === "connected"`)
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("$")`)
	b.typeLine("echo browser-split-$((6*7))")
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("browser-split-42")`)

	lockID(t, s.adminCLI(authA, "lock", "--user", u.Name, "--message", "browser-locked-through-auth"))
	b.waitJS(`document.getElementById("terminal").dataset.closed === "1"`)
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("browser-locked-through-auth")`)
	ctx, cancel := context.WithDeadline(b.ctx, patience.Deadline(t))
	defer cancel()
	st, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#term-status")))
	if err != nil || !strings.HasPrefix(st, "disconnected") {
		t.Fatalf("terminal status %q after the lock (%v)", st, err)
	}
}
