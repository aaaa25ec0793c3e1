//go:build integration

package clustertest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/testkit"
)

// splitViewerRole lets its users log in to the nodes labelled
// zone-7f3=nowhere-7f3: none, until an admin edits it.
const splitViewerRole = `kind: role
metadata: {name: viewer}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {zone-7f3: nowhere-7f3}
`

// text is the text content of the first element matching sel ("" when
// there is none).
func (b *splitBrowser) text(sel string) string {
	b.t.Helper()
	return b.eval(`(document.querySelector(` + quoted(sel) + `)||{}).textContent||""`)
}

// quoted is s as a double-quoted string (JSON), which JavaScript and YAML
// read back as s.
func quoted(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestSplitProxyWebAdminPages: an admin signed in (headless Chromium) at
// the web UI of a proxy running apart from auth writes through the pages
// that write, each call made to auth as the admin (api.ForwardAs): the
// roles editor shows a bad role's validation error at its line, then the
// fixed text's diff, and applies it; the role is in effect at once (the
// viewer's servers page, at the same proxy, now lists the node it did
// not). A join token made on the tokens page comes with the exact
// command, and that command, run on another host, joins a node through
// the proxy. A user who is not an admin is refused the same pages and
// their writes (auth's refusal), and nothing is written.
func TestSplitProxyWebAdminPages(t *testing.T) {
	s, authA, proxyA := newSplitWithNodeA(t)
	s.apply(authA, "apply the viewer role", splitViewerRole)
	admin := s.AddUser(authA, "webadmin", []string{"admin"}, []string{osLogin})
	viewer := s.AddUser(authA, "webviewer", []string{"viewer"}, []string{osLogin})
	ctx := context.Background()
	s.waitNode(authA, "node-a")

	// The viewer (driven from Go over the proxy's HTTPS port) sees no
	// server: the role allows none.
	v := newSplitWebUser(t, proxyA)
	if st, page := v.signin(viewer, viewer.Password); st != http.StatusOK || v.csrf == "" {
		t.Fatalf("the viewer's sign-in: status %d: %.500s", st, page)
	}
	if st, page := v.get("/web/servers"); st != http.StatusOK || strings.Contains(page, "node-a") {
		t.Fatalf("the viewer's servers page before the edit: status %d, lists node-a: %v", st, strings.Contains(page, "node-a"))
	}

	// The viewer is not an admin: auth refuses the pages and the writes.
	tokensBefore, err := authA.admin.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, page := v.get("/web/admin/roles"); st != http.StatusForbidden || strings.Contains(page, "name: viewer") {
		t.Fatalf("a non-admin's roles page: status %d: %.300s", st, page)
	}
	if st, page := v.get("/web/admin/tokens"); st != http.StatusForbidden || strings.Contains(page, `id="tokens"`) {
		t.Fatalf("a non-admin's tokens page: status %d: %.300s", st, page)
	}
	opened := strings.Replace(splitViewerRole, "zone-7f3: nowhere-7f3", "'*': '*'", 1)
	if st, _ := v.post("/web/admin/roles/review", url.Values{"csrf": {v.csrf}, "yaml": {opened}}); st != http.StatusForbidden {
		t.Fatalf("a non-admin's roles review: status %d", st)
	}
	if st, _ := v.post("/web/admin/roles/apply", url.Values{"csrf": {v.csrf}, "yaml": {opened}, "rev": {"1"}}); st != http.StatusForbidden {
		t.Fatalf("a non-admin's roles apply: status %d", st)
	}
	if st, page := v.post("/web/admin/tokens", url.Values{"csrf": {v.csrf}, "ttl": {"30m"}}); st != http.StatusForbidden || strings.Contains(page, `id="join-command"`) {
		t.Fatalf("a non-admin's token: status %d: %.300s", st, page)
	}
	if r, err := authA.admin.GetRole(ctx, "viewer"); err != nil || r.Spec.Allow.NodeLabels["zone-7f3"] == nil {
		t.Fatalf("the viewer role after the refused apply: %+v, %v", r, err)
	}
	if toks, err := authA.admin.ListTokens(ctx); err != nil || len(toks) != len(tokensBefore) {
		t.Fatalf("tokens after the refused create: %d, was %d (%v)", len(toks), len(tokensBefore), err)
	}

	// The admin, in a real browser at the same proxy.
	b := newSplitBrowser(t, "https://"+proxyA.Addr())
	b.signInWithPassword(admin)
	b.waitJS(`location.pathname === "/web/servers"`)

	// The roles editor: a bad role is refused with the line shown.
	b.open("/web/admin/roles")
	text := b.eval(`document.getElementById("roles-yaml").value`)
	// The stored roles, as YAML: the viewer's label as a list.
	const closed, open = "zone-7f3:\n        - nowhere-7f3\n", "'*':\n        - '*'\n"
	if !strings.Contains(text, "name: viewer") || strings.Count(text, closed) != 1 {
		t.Fatalf("the editor holds %q", text)
	}
	bad := text + "\n---\nkind: role\nmetadata: {name: broken}\nspec:\n  allow:\n    logns: [ops]\n"
	b.do(chromedp.SetValue(chromedp.CSS("#roles-yaml"), bad))
	b.submit("#roles-review-button")
	if got := b.text("#roles-problem-text"); !strings.Contains(got, "logns") || !strings.Contains(got, "line") {
		t.Fatalf("validation error %q", got)
	}
	if got := b.text("#roles-bad-line"); !strings.Contains(got, "logns") {
		t.Fatalf("marked line %q", got)
	}
	if _, err := authA.admin.GetRole(ctx, "broken"); err == nil {
		t.Fatal("an invalid role was stored")
	}
	// Fixed: the viewer's nodes opened; the review shows the diff.
	good := strings.Replace(text, closed, open, 1)
	b.do(chromedp.SetValue(chromedp.CSS("#roles-yaml"), good))
	b.submit("#roles-review-button")
	if got := b.text(`section[data-role="viewer"] .op`); got != "updated" {
		t.Fatalf("viewer in the review: %q (problem %q)", got, b.text("#roles-problem-text"))
	}
	diff := b.text(`section[data-role="viewer"] pre.diff`)
	if !strings.Contains(diff, "- ") || !strings.Contains(diff, "nowhere-7f3") || !strings.Contains(diff, "+ ") {
		t.Fatalf("the viewer's diff: %q", diff)
	}
	// Reviewing changed nothing yet.
	if st, page := v.get("/web/servers"); st != http.StatusOK || strings.Contains(page, "node-a") {
		t.Fatalf("the viewer's servers page after the review only: status %d, lists node-a: %v", st, strings.Contains(page, "node-a"))
	}
	b.submit("#roles-apply")
	if got := b.text("#notice"); !strings.Contains(got, `role "viewer" updated`) {
		t.Fatalf("after apply: %q (error %q)", got, b.text("#error"))
	}
	// In effect for the viewer's signed-in session: auth decides with the
	// role as stored now.
	testkit.WaitFor(t, "node-a on the viewer's servers page", func() bool {
		st, page := v.get("/web/servers")
		return st == http.StatusOK && strings.Contains(page, "node-a")
	})

	// A join token: the page shows the exact command, and the command
	// joins a node through this proxy.
	b.open("/web/admin/tokens")
	b.submit("#token-create")
	cmd := strings.TrimSpace(b.text("#join-command"))
	lines := strings.Split(cmd, "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "warden start ") {
		t.Fatalf("the join command: %q (error %q)", cmd, b.text("#error"))
	}
	f := strings.Fields(lines[1])
	flag := func(name string) string {
		for i, w := range f {
			if w == name && i+1 < len(f) {
				return f[i+1]
			}
		}
		t.Fatalf("no %s in %q", name, cmd)
		return ""
	}
	if flag("--proxy") != proxyA.Addr() {
		t.Fatalf("the command %q names another proxy than %s", cmd, proxyA.Addr())
	}
	if pin := flag("--ca-pin"); !strings.EqualFold(strings.TrimPrefix(pin, "sha256:"), strings.TrimPrefix(s.pin, "sha256:")) {
		t.Fatalf("the command's CA pin %s, the cluster's %s", pin, s.pin)
	}
	if strings.Contains(cmd, "--token ") {
		t.Fatalf("the command puts the token on the command line: %q", cmd)
	}
	// Run as shown, in a directory of its own on a host of its own (the
	// warden binary of the test; a name and data directory added, as the
	// page says to). exec: the node is the process the test stops.
	dir := filepath.Join(s.dir, "joined")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	script := "cd " + dir + " && " + lines[0] + " && exec " + WardenBinary + strings.TrimPrefix(lines[1], "warden") +
		" --name node-b --data-dir " + filepath.Join(dir, "data")
	joined := s.lab.Host("node-b").Start(t, "sh", "-c", script)
	joined.waitOutput(t, "tunnel to proxy up")
	testkit.WaitFor(t, "node-b, joined with the page's token, on the admin's servers page", func() bool {
		b.open("/web/servers")
		return strings.Contains(b.text("body"), "node-b")
	})
}
