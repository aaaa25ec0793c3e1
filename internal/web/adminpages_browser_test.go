//go:build integration

package web_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/clustertest"
)

// TestBrowserAdminPages walks the admin pages added for issue 23 in a real
// browser: a reset from the users page (link and QR code) that the user
// finishes in their own browser (new password, new TOTP) and signs in
// with, while the old password no longer works; a role's roles changed
// in place; the roles editor (an error shown at its line, a diff, apply);
// the cluster health page; the lock pickers; the audit log's chain check
// and its export of the filtered set. Hostile strings stay text.
func TestBrowserAdminPages(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	root := c.AddUser("root", []string{"admin"}, nil)
	gina := c.AddUser("gina", []string{"dev"}, []string{"gina"})
	base := "https://" + c.ProxyAddr()
	b := newBrowser(t, base)
	b.open("/web/login")
	b.signin(root)

	// Reset gina from the users page: a link and its QR code.
	b.open("/web/admin/users")
	b.submit(`#users tr.user[data-user="gina"] button.reset`)
	link := b.text("#invite-url")
	if !strings.HasPrefix(link, base+"/web/invite/") {
		t.Fatalf("reset link %q", link)
	}
	if n := eval[float64](b, `document.querySelectorAll("#invite-qr svg path").length`); n != 1 {
		t.Fatal("no QR code of the reset link")
	}
	b.screenshot("admin-reset")

	// Gina opens it: the reset page, a new TOTP secret (QR and typed).
	g := b.context()
	g.do(chromedp.Navigate(link))
	if got := g.text("#invite-title"); !strings.Contains(got, "Reset") {
		t.Fatalf("the reset link opens %q", got)
	}
	if got := g.text("#invite-user"); got != "gina" {
		t.Fatalf("the reset page names %q", got)
	}
	if n := eval[float64](g, `document.querySelector("img.qr").naturalWidth`); n == 0 {
		t.Fatal("the QR code image did not load")
	}
	secret := strings.TrimSpace(g.text("#totp-secret"))
	if secret == gina.TOTPSecret {
		t.Fatal("the reset kept the old TOTP secret")
	}
	g.screenshot("reset")
	renewed := &clustertest.User{Name: "gina", Password: "a brand new web password 2", TOTPSecret: secret}
	g.fill("#password", renewed.Password)
	g.fill("#password2", renewed.Password)
	g.fill("#otp", renewed.NextOTP(t))
	g.submit("#signup")
	if got := g.text("#notice"); !strings.Contains(got, "reset") {
		t.Fatalf("after the reset: notice %q", got)
	}
	// The old password no longer signs in; the new one does.
	g.signin(gina)
	if got := g.text("#error"); got == "" {
		t.Fatal("the old password still signs in after a reset")
	}
	g.signin(renewed)
	if loc := g.location(); !strings.HasSuffix(loc, "/web/servers") {
		t.Fatalf("after signing in with the new password at %s", loc)
	}

	// Roles of a user, changed in place: gina loses dev, her session ends.
	b.open("/web/admin/users")
	b.fill(`#users tr.user[data-user="gina"] input.roles`, "prod-admin")
	b.submit(`#users tr.user[data-user="gina"] button.set-roles`)
	if got := eval[string](b, `document.querySelector('#users tr.user[data-user="gina"] input.roles').value`); got != "prod-admin" {
		t.Fatalf("gina's roles after the change: %q", got)
	}
	g.open("/web/servers")
	if got := g.text("#error"); !strings.Contains(got, "session has ended") {
		t.Fatalf("gina's session after losing a role: %q", got)
	}

	// The roles editor: an invalid edit is shown at its line, escaped.
	b.open("/web/admin/roles")
	b.screenshot("admin-roles")
	text := eval[string](b, `document.getElementById("roles-yaml").value`)
	if !strings.Contains(text, "name: prod-admin") {
		t.Fatalf("the editor holds %q", text)
	}
	bad := text + "---\nkind: role\nmetadata: {name: ops, description: '" + xss + "'}\nspec:\n  allow:\n    logns: [ops]\n"
	b.fill("#roles-yaml", bad)
	b.submit("#roles-review-button")
	if got := b.text("#roles-problem-text"); !strings.Contains(got, "logns") || !strings.Contains(got, "line") {
		t.Fatalf("validation error %q", got)
	}
	if got := b.text("#roles-bad-line"); !strings.Contains(got, "logns") {
		t.Fatalf("marked line %q", got)
	}
	b.screenshot("admin-roles-error")
	// Fixed: the review shows the new role's diff; apply stores it.
	good := strings.Replace(bad, "logns", "logins", 1)
	b.fill("#roles-yaml", good)
	b.submit("#roles-review-button")
	if got := b.text(`section[data-role="ops"] .op`); got != "created" {
		t.Fatalf("ops in the review: %q", got)
	}
	if got := b.text(`section[data-role="ops"] pre.diff`); !strings.Contains(got, xss) {
		t.Fatalf("the diff does not show the description as text: %q", got)
	}
	b.screenshot("admin-roles-review")
	b.submit("#roles-apply")
	if got := b.text("#notice"); !strings.Contains(got, `role "ops" created`) {
		t.Fatalf("after apply: %q", got)
	}
	if r, err := c.Admin.GetRole(context.Background(), "ops"); err != nil || r.Metadata.Description != xss {
		t.Fatalf("ops after apply: %+v, %v", r, err)
	}

	// Cluster health: the node online, the CAs with their expiry.
	b.open("/web/admin/health")
	if got := b.text("#health-node-counts"); !strings.Contains(got, "1 online") {
		t.Fatalf("node counts %q", got)
	}
	if got := b.text(`#health-online tr.node[data-node="node1"]`); got == "" {
		t.Fatal("node1 is not listed online")
	}
	if got := b.text("#health-cas"); !strings.Contains(got, "TLS CA") || !strings.Contains(got, "UTC") {
		t.Fatalf("CAs %q", got)
	}
	b.screenshot("admin-health")

	// Lock pickers offer the users, roles, logins and nodes.
	b.open("/web/admin/locks")
	for list, want := range map[string]string{"pick-users": "gina", "pick-roles": "ops", "pick-logins": "gina", "pick-nodes": "node1"} {
		if ok := eval[bool](b, `[...document.querySelectorAll("#`+list+` option")].some(o => o.value === "`+want+`")`); !ok {
			t.Fatalf("%s does not offer %s", list, want)
		}
	}

	// The audit log: the chain check, and the export of the filtered set.
	b.open("/web/audit?type=role.apply")
	b.submit("#verify-chain")
	if got := b.text("#verify-result"); !strings.Contains(got, "The chain is intact") {
		t.Fatalf("chain check %q", got)
	}
	if loc := b.location(); !strings.Contains(loc, "type=role.apply") {
		t.Fatalf("the chain check lost the filter: %s", loc)
	}
	b.screenshot("audit-verify")
	href := eval[string](b, `document.getElementById("export-jsonl").getAttribute("href")`)
	body := eval[string](b, `(() => { const x = new XMLHttpRequest(); x.open("GET", `+jsString(href)+`, false); x.send(); return x.status + "\n" + x.responseText; })()`)
	status, lines, _ := strings.Cut(body, "\n")
	if status != "200" {
		t.Fatalf("export: status %s", status)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		var ev struct{ Event, User string }
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Event != "role.apply" {
			t.Fatalf("exported line %q: %v", l, err)
		}
		n++
	}
	if n < 2 {
		t.Fatalf("exported %d role.apply events", n)
	}

	// An access request shows its thresholds and counts down its expiry.
	ivy := c.AddUser("ivy", []string{"dev"}, []string{"ivy"})
	iv := b.context()
	iv.open("/web/login")
	iv.signin(ivy)
	iv.open("/web/requests")
	eval[bool](iv, `(document.getElementById("new-request").open = true)`)
	iv.fill("#req-roles", "prod-admin")
	iv.fill("#req-reason", "migration")
	iv.submit("#req-create")
	if got := iv.text("#req-approvals"); !strings.Contains(got, "0 of 1 needed") {
		t.Fatalf("approvals %q", got)
	}
	if got := iv.text("#req-denials"); !strings.Contains(got, "of 1 needed to deny") {
		t.Fatalf("denials %q", got)
	}
	if got := iv.text("#req-countdown"); !strings.HasPrefix(got, "in ") {
		t.Fatalf("countdown %q", got)
	}
	// The countdown runs in the page: point it 30 s ahead and see it count.
	eval[bool](iv, `!!(document.getElementById("req-countdown").dateTime = new Date(Date.now() + 30000).toISOString())`)
	iv.waitJS(`/^in (2[0-9]|30)s$/.test(document.getElementById("req-countdown").textContent)`)

	// Recordings filter by login and time: ivy's session from the web
	// terminal is found by its login and time range, and not outside them.
	clustertest.EnsureOSUser(t, "ivy")
	iv.open("/web/servers/node1/terminal?login=ivy")
	iv.waitJS(`document.getElementById("term-status").textContent === "connected"`)
	iv.waitJS(`document.querySelector(".xterm-rows").textContent.includes("$")`)
	iv.typeText("echo REC-$((2*3)); exit")
	iv.pressEnter()
	iv.waitJS(`document.getElementById("terminal").dataset.closed === "1"`)
	rec := waitRecording(t, c, "ivy")
	const layout = "2006-01-02T15:04"
	before, after := rec.Start.UTC().Add(-time.Minute).Format(layout), rec.Start.UTC().Add(time.Minute).Format(layout)
	rows := func(query string) float64 {
		b.open("/web/recordings?" + query)
		return eval[float64](b, `document.querySelectorAll("#recordings tbody tr").length`)
	}
	for query, want := range map[string]float64{
		"login=ivy": 1, "login=root": 0, "user=ivy&login=ivy&since=" + before: 1, "since=" + after: 0,
		"until=" + before: 0, "since=" + before + "&until=" + after + "&node=node1": 1,
	} {
		if got := rows(query); got != want {
			t.Fatalf("recordings?%s lists %v, want %v", query, got, want)
		}
	}
	b.open("/web/recordings?q=REC-&login=root")
	if got := b.text("#no-matches"); got == "" {
		t.Fatal("a command search ignores the login filter")
	}
	b.open("/web/recordings?q=REC-&login=ivy&since=" + before)
	if got := b.text("#rec-matches .match code"); !strings.Contains(got, "REC-") {
		t.Fatalf("search with filters shows %q", got)
	}
	b.screenshot("recordings-filter")

	for _, br := range []*browser{b, g, iv} {
		if v := eval[bool](br, `window.__xss !== undefined`); v {
			t.Fatal("a hostile string ran as script")
		}
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
