package web_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/clustertest"
)

// TestWhoAmIShowsCurrentLogins: "Who am I" and the Connect buttons follow
// the roles as they are now, not as they were at sign-in: a login the
// role no longer allows disappears at once, and one it allows since shows
// as usable after signing in again (the session's certificate lacks it).
func TestWhoAmIShowsCurrentLogins(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	alice := c.AddUser("alice", []string{"dev"}, []string{"alice"})
	w := newWebClient(t, c)
	w.signin(alice)
	chips := func(page, id string) string {
		m := regexp.MustCompile(`id="` + id + `">(.*?)</dd>`).FindStringSubmatch(page)
		if m == nil {
			return ""
		}
		return regexp.MustCompile(`<[^>]+>`).ReplaceAllString(m[1], "")
	}
	_, page := w.do("GET", "/web/me", nil, nil)
	if got := strings.TrimSpace(chips(page, "me-logins")); got != "alice" {
		t.Fatalf("logins at sign-in: %q", got)
	}
	c.ApplyRoles(strings.Replace(roles, "logins: ['{{internal.logins}}']\n    node_labels: {env: dev}",
		"logins: [deploy]\n    node_labels: {env: dev}", 1))
	_, page = w.do("GET", "/web/me", nil, nil)
	if got := strings.TrimSpace(chips(page, "me-logins")); got != "none" {
		t.Fatalf("logins after the role lost alice: %q", got)
	}
	if got := strings.TrimSpace(chips(page, "me-later")); got != "deploy" {
		t.Fatalf("logins after signing in again: %q", got)
	}
	_, page = w.do("GET", "/web/servers", nil, nil)
	if strings.Contains(page, "terminal?login=alice") {
		t.Fatal("the servers page still offers the login alice")
	}
}
