package web_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/storage/sqlite/sqlitetest"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/web"
)

var revRe = regexp.MustCompile(`name="rev" value="([0-9a-f]+)"`)

// devRole is the dev role of roles with a description (hostile) and
// another login.
const devRole = `kind: role
metadata:
  name: dev
  description: '` + `<script>window.__xss=1</script>"onmouseover="x` + `'
spec:
  allow:
    logins: ['{{internal.logins}}', deploy]
    node_labels: {env: dev}
    request:
      roles: [prod-admin]
      max_duration: 1h
      reason_required: true
`

// TestRolesEditor: the roles page shows the stored roles; a review shows
// validation errors at their line, or each role's diff; apply stores the
// changed roles through auth (audited), and refuses when the roles
// changed since the review; only an admin may apply, with the form's
// CSRF token.
func TestRolesEditor(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NoNode: true})
	c.ApplyRoles(roles)
	ctx := context.Background()
	root := c.AddUser("root", []string{"admin"}, nil)
	hal := c.AddUser("hal", []string{"dev"}, []string{"hal"})
	w := newWebClient(t, c)
	csrf := w.signin(root)

	page := mustGet(w, "/web/admin/roles")
	text0 := "kind: role\nmetadata: {name: dev}\nspec: {}\n"
	if !strings.Contains(page, "name: prod-admin") || !strings.Contains(page, `id="roles-yaml"`) {
		t.Fatalf("roles page does not show the roles:\n%s", page)
	}

	// An invalid text: the error names the line, shown with its
	// neighbours; hostile text is escaped. Nothing is stored.
	bad := "kind: role\nmetadata: {name: ops}\nspec:\n  allow:\n    logns: ['<script>window.__xss=1</script>']\n"
	resp, page := w.do("POST", "/web/admin/roles/review", url.Values{"csrf": {csrf}, "yaml": {bad}}, nil)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, "line 5") || !strings.Contains(page, "logns") ||
		!strings.Contains(page, `id="roles-bad-line"`) {
		t.Fatalf("review of an invalid text: status %d\n%s", resp.StatusCode, page)
	}
	if strings.Contains(page, "<script>window.__xss") || !strings.Contains(page, "&lt;script&gt;window.__xss") {
		t.Fatal("the invalid text is not escaped")
	}
	if strings.Contains(page, `id="roles-apply"`) {
		t.Fatal("an invalid text can be applied")
	}

	// The text is bounded (1 MiB), above the 64 KiB of other forms.
	resp, page = w.do("POST", "/web/admin/roles/review", url.Values{"csrf": {csrf}, "yaml": {strings.Repeat("#", 1<<20+1)}}, nil)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, "longer than 1024 KiB") {
		t.Fatalf("review of a long text: status %d", resp.StatusCode)
	}
	if resp, _ = w.do("POST", "/web/admin/roles/review", url.Values{"csrf": {csrf}, "yaml": {"# " + strings.Repeat("x", 200<<10) + "\n" + text0}}, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("review of a 200 KiB text: status %d", resp.StatusCode)
	}

	// A valid text: dev updated, ops created, the others kept; the diff
	// shows the new login, escaped.
	text := devRole + "---\nkind: role\nmetadata: {name: ops}\nspec:\n  allow:\n    logins: [ops]\n"
	resp, page = w.do("POST", "/web/admin/roles/review", url.Values{"csrf": {csrf}, "yaml": {text}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `data-role="dev" data-op="updated"`) ||
		!strings.Contains(page, `data-role="ops" data-op="created"`) || !strings.Contains(page, `<span class="diff-add">&#43;       - deploy</span>`) {
		t.Fatalf("review: status %d\n%s", resp.StatusCode, page)
	}
	if strings.Contains(page, "<script>window.__xss") {
		t.Fatal("the diff is not escaped")
	}
	m := revRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no revision in the review:\n%s", page)
	}
	apply := url.Values{"csrf": {csrf}, "yaml": {text}, "rev": {m[1]}}

	// Not without the CSRF token, and not by a user whose roles do not
	// allow it (auth's refusal).
	if resp, _ = w.do("POST", "/web/admin/roles/apply", url.Values{"yaml": {text}, "rev": {m[1]}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("apply without CSRF token: status %d", resp.StatusCode)
	}
	h := newWebClient(t, c)
	hcsrf := h.signin(hal)
	if resp, page = h.do("GET", "/web/admin/roles", nil, nil); resp.StatusCode != http.StatusForbidden || strings.Contains(page, "name: prod-admin") {
		t.Fatalf("a non-admin's roles page: status %d", resp.StatusCode)
	}
	if resp, _ = h.do("POST", "/web/admin/roles/apply", url.Values{"csrf": {hcsrf}, "yaml": {text}, "rev": {m[1]}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a non-admin's apply: status %d", resp.StatusCode)
	}
	if _, err := c.Admin.GetRole(ctx, "ops"); err == nil {
		t.Fatal("a refused apply stored a role")
	}

	// Someone else changes a role after the review: apply refuses.
	c.ApplyRoles("kind: role\nmetadata: {name: reviewer}\nspec:\n  allow:\n    review_requests: {roles: ['*']}\n")
	resp, page = w.do("POST", "/web/admin/roles/apply", apply, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(page, "changed since your review") {
		t.Fatalf("apply after a concurrent change: status %d\n%s", resp.StatusCode, page)
	}
	if _, err := c.Admin.GetRole(ctx, "ops"); err == nil {
		t.Fatal("a stale apply stored a role")
	}

	// Reviewed again, applied: stored and audited as the admin's.
	m = revRe.FindStringSubmatch(page)
	apply.Set("rev", m[1])
	resp, page = w.do("POST", "/web/admin/roles/apply", apply, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `Applied: role &#34;dev&#34; updated, role &#34;ops&#34; created.`) {
		t.Fatalf("apply: status %d\n%s", resp.StatusCode, page)
	}
	dev, err := c.Admin.GetRole(ctx, "dev")
	if err != nil || !strings.Contains(strings.Join(dev.Spec.Allow.Logins, ","), "deploy") {
		t.Fatalf("dev after apply: %+v, %v", dev, err)
	}
	evs, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.RoleApply, User: "root"})
	if err != nil || len(evs) != 2 {
		t.Fatalf("role.apply events by root: %+v, %v", evs, err)
	}
	// Applying the same text again changes nothing.
	m = revRe.FindStringSubmatch(mustPost(w, "/web/admin/roles/review", url.Values{"csrf": {csrf}, "yaml": {text}}))
	if m != nil {
		t.Fatal("a review without changes offers to apply")
	}

	// Remove a role from the list.
	if resp, _ = w.do("POST", "/web/admin/roles/ops/delete", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("remove role: status %d", resp.StatusCode)
	}
	if _, err := c.Admin.GetRole(ctx, "ops"); err == nil {
		t.Fatal("ops is still stored after its removal")
	}
}

func mustPost(w *webClient, path string, form url.Values) string {
	w.t.Helper()
	resp, page := w.do("POST", path, form, nil)
	if resp.StatusCode != http.StatusOK {
		w.t.Fatalf("POST %s: status %d\n%s", path, resp.StatusCode, page)
	}
	return page
}

// TestAuditExport: the export holds exactly the filtered events, over
// several reads of the log, as JSON lines or as CSV with formula cells
// defused; it needs the audit permission; the page shows the chain check.
func TestAuditExport(t *testing.T) {
	defer web.SetExportPage(3)()
	c := clustertest.New(t, clustertest.Options{NoNode: true})
	c.ApplyRoles(roles)
	ctx := context.Background()
	bob := c.AddUser("bob", []string{"auditor"}, nil)
	hal := c.AddUser("hal", []string{"dev"}, []string{"hal"})
	// Failed sign-ins under hostile names: user.login events whose user
	// cell a spreadsheet would run.
	for _, name := range []string{"=HYPERLINK(\"http://evil.example\")", "+1+1", "@SUM(A1)", "-2+3", "x<script>"} {
		_, _ = c.Proc.Auth().Login(ctx, auth.LoginRequest{User: name, Password: "wrong", OTP: "000000", RemoteAddr: "192.0.2.1"})
	}
	want, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.UserLogin, Limit: audit.MaxLimit})
	if err != nil || len(want) < 5 {
		t.Fatalf("user.login events: %d, %v", len(want), err)
	}
	w := newWebClient(t, c)
	w.signin(bob)

	resp, body := w.do("GET", "/web/audit/export?format=jsonl&type=user.login&order=oldest", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("JSON lines export: status %d %v", resp.StatusCode, resp.Header)
	}
	var got []audit.Event
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var ev audit.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, ev)
	}
	// bob's own sign-in came after want was read: one more.
	if len(got) != len(want)+1 {
		t.Fatalf("exported %d events, want %d", len(got), len(want)+1)
	}
	for i, ev := range got {
		if ev.Event != audit.UserLogin || (i > 0 && ev.Seq <= got[i-1].Seq) || (i < len(want) && ev.ID != want[i].ID) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}

	resp, body = w.do("GET", "/web/audit/export?format=csv&type=user.login", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV export: status %d", resp.StatusCode)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) != len(got)+1 || rows[0][0] != "seq" {
		t.Fatalf("CSV: %d rows, %v", len(rows), err)
	}
	users := map[string]bool{}
	for _, row := range rows[1:] {
		if row[2] != audit.UserLogin {
			t.Fatalf("CSV row %v", row)
		}
		for _, cell := range row {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Fatalf("CSV cell %q would run as a formula", cell)
			}
		}
		users[row[4]] = true
	}
	if !users[`'=HYPERLINK("http://evil.example")`] || !users["'+1+1"] || !users["'@SUM(A1)"] || !users["'-2+3"] || !users["x<script>"] {
		t.Fatalf("CSV users %v", users)
	}

	// The chain check, on the page.
	page := mustGet(w, "/web/audit?verify=1")
	if !strings.Contains(page, "The chain is intact") {
		t.Fatalf("verify: %s", page)
	}

	// Without the audit permission: refused, no events.
	h := newWebClient(t, c)
	h.signin(hal)
	if resp, body = h.do("GET", "/web/audit/export?format=jsonl", nil, nil); resp.StatusCode != http.StatusForbidden || strings.Contains(body, `"event"`) {
		t.Fatalf("export by a non-auditor: status %d", resp.StatusCode)
	}
	if _, page = h.do("GET", "/web/audit?verify=1", nil, nil); strings.Contains(page, "The chain is intact") {
		t.Fatal("a non-auditor sees the chain check")
	}
}

// TestClusterHealthPage: an admin sees auth, storage, the audit log and
// the CAs; a user without the cluster permission sees auth's refusal.
func TestClusterHealthPage(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NoNode: true})
	c.ApplyRoles(roles)
	root := c.AddUser("root", []string{"admin"}, nil)
	hal := c.AddUser("hal", []string{"dev"}, []string{"hal"})
	// A node reports hostile strings (its heartbeat's version, its name).
	hostile := `<script>window.__xss=1</script>"onmouseover="x`
	c.Proc.Auth().SetInventory(inventory{{ID: "n1", Name: "web1" + hostile, Hostname: hostile, Version: hostile, LastSeen: time.Now()}})
	w := newWebClient(t, c)
	w.signin(root)
	page := mustGet(w, "/web/admin/health")
	if strings.Contains(page, "<script>window.__xss") || !strings.Contains(page, "&lt;script&gt;window.__xss=1&lt;/script&gt;&#34;onmouseover=&#34;x") {
		t.Fatalf("hostile node strings are not escaped:\n%s", page)
	}
	for _, want := range []string{"TLS CA", "user SSH CA", "host SSH CA", `id="health-storage-state"><span class="ok">answers`,
		`id="health-audit-log"><span class="ok">answers`, `id="health-node-counts"><strong>1</strong> online`} {
		if !strings.Contains(page, want) {
			t.Fatalf("health page lacks %q:\n%s", want, page)
		}
	}
	h := newWebClient(t, c)
	h.signin(hal)
	if resp, page := h.do("GET", "/web/admin/health", nil, nil); resp.StatusCode != http.StatusForbidden || strings.Contains(page, "TLS CA") {
		t.Fatalf("a non-admin's health page: status %d", resp.StatusCode)
	}
}

type inventory []auth.Node

func (i inventory) Nodes() []auth.Node { return i }

// TestAuditVerifyShowsBreak: after the owner of the database rewrites an
// event and recomputes the chain, the audit page's chain check names the
// first broken event (the signed checkpoint no longer matches).
func TestAuditVerifyShowsBreak(t *testing.T) {
	dir := t.TempDir()
	c := clustertest.New(t, clustertest.Options{NoNode: true, DataDir: dir, Auth: service.AuthConfig{CheckpointInterval: time.Millisecond}})
	c.ApplyRoles(roles)
	bob := c.AddUser("bob", []string{"auditor"}, nil)
	ctx := context.Background()
	testkit.WaitFor(t, "a signed checkpoint", func() bool {
		evs, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.Checkpoint, Limit: 1})
		return err == nil && len(evs) > 0
	})
	w := newWebClient(t, c)
	w.signin(bob)
	if page := mustGet(w, "/web/audit?verify=1"); !strings.Contains(page, "The chain is intact") || !strings.Contains(page, "signed checkpoints verified") {
		t.Fatalf("verify before the rewrite:\n%s", page)
	}

	db, err := sql.Open("sqlite", filepath.Join(dir, "warden.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `UPDATE audit_events SET body = replace(body, '"success":true', '"success":false') WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	if err := sqlitetest.RechainAudit(ctx, db); err != nil {
		t.Fatal(err)
	}
	page := mustGet(w, "/web/audit?verify=1")
	if !strings.Contains(page, "The chain is broken") || !regexp.MustCompile(`id="verify-first-bad">#\d+`).MatchString(page) {
		t.Fatalf("verify after the rewrite:\n%s", page)
	}
}
