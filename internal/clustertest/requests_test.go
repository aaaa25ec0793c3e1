//go:build integration

package clustertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/notify"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/service"
)

const requestRoles = `
kind: role
metadata: {name: contractor}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: dev}
    request:
      roles: [prod-*]
      max_duration: 1h
      reason_required: true
      thresholds: {approve: 2}
---
kind: role
metadata: {name: prod-admin}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: prod}
---
kind: role
metadata: {name: reviewer}
spec:
  allow:
    review_requests: {roles: ['prod-*']}
`

type webhookSink struct {
	mu     sync.Mutex
	bodies []map[string]any
}

func (w *webhookSink) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err == nil {
		w.mu.Lock()
		w.bodies = append(w.bodies, m)
		w.mu.Unlock()
	}
	rw.WriteHeader(200)
}

func (w *webhookSink) wait(t *testing.T, pred func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := patience.Deadline(t)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, b := range w.bodies {
			if pred(b) {
				w.mu.Unlock()
				return b
			}
		}
		w.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no matching webhook payload; got %v", w.bodies)
	return nil
}

// TestAccessRequestEndToEnd is SCENARIOS S2 with the real OpenSSH client.
func TestAccessRequestEndToEnd(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	slack, generic := &webhookSink{}, &webhookSink{}
	slackSrv, genericSrv := httptest.NewServer(slack), httptest.NewServer(generic)
	defer slackSrv.Close()
	defer genericSrv.Close()
	c := New(t, Options{NodeName: "prod1", NodeLabels: map[string]string{"env": "prod"}, Auth: service.AuthConfig{
		Notifications: []notify.Target{{URL: slackSrv.URL, Format: "slack"}, {URL: genericSrv.URL, Format: "json"}}}})
	c.ApplyRoles(requestRoles)
	contractor := c.AddUser("contractor", []string{"contractor"}, []string{osLogin})
	alice := c.AddUser("alice", []string{"reviewer"}, nil)
	bob := c.AddUser("bob", []string{"reviewer"}, nil)
	home := c.Login(contractor)

	// Denied, with the roles to request named.
	r := c.Warden(home, nil, "ssh", osLogin+"@prod1", "true")
	if r.Code == 0 || !strings.Contains(r.Stderr, "warden request create --roles prod-admin") {
		t.Fatalf("denial without a suggestion: %s", r)
	}
	// A reason is required by the role.
	if r := c.Warden(home, nil, "request", "create", "--roles", "prod-admin", "--nowait"); r.Code == 0 || !strings.Contains(r.Stderr, "reason") {
		t.Fatalf("request without reason: %s", r)
	}
	duration := 20 * time.Second
	r = c.Warden(home, nil, "request", "create", "--roles", "prod-admin", "--reason", "INC-123", "--duration", duration.String(), "--nowait")
	if r.Code != 0 {
		t.Fatalf("request create: %s", r)
	}
	id := regexp.MustCompile(`Request (\S+) created`).FindStringSubmatch(r.Stdout)[1]
	if !strings.Contains(r.Stdout, "prod-admin for 20s,") {
		t.Fatalf("request create: %s", r)
	}
	// Durations as people write them, not nanoseconds.
	if r := c.Warden(home, nil, "request", "show", id); r.Code != 0 || !strings.Contains(r.Stdout, "Duration:  20s once approved (at most 1h)") {
		t.Fatalf("request show: %s", r)
	}

	// Reviewers are notified: Slack-compatible and generic JSON, with the
	// command to review the request (no link: there is no web page yet).
	review := "warden request review " + id
	s := slack.wait(t, func(m map[string]any) bool { return strings.Contains(m["text"].(string), id) })
	if text := s["text"].(string); !strings.Contains(text, "INC-123") || !strings.Contains(text, "`"+review+"`") || strings.Contains(text, "/web/") {
		t.Fatalf("slack payload: %v", s)
	}
	g := generic.wait(t, func(m map[string]any) bool { return m["event"] == "access_request.create" })
	if f := g["fields"].(map[string]any); f["id"] != id || f["user"] != "contractor" || g["command"] != review || g["link"] != nil {
		t.Fatalf("json payload: %v", g)
	}

	// The requester cannot approve their own request.
	if r := c.Warden(home, nil, "request", "review", id, "--approve"); r.Code == 0 {
		t.Fatalf("self-review accepted: %s", r)
	}
	aliceHome, bobHome := c.Login(alice), c.Login(bob)
	// The notification's command, as written, shows the request and how
	// to decide.
	if r := c.Warden(aliceHome, nil, strings.Fields(review)[1:]...); r.Code == 0 || !strings.Contains(r.Stdout, "INC-123") ||
		!strings.Contains(r.Stderr, review+" --approve (or --deny)") {
		t.Fatalf("%s: %s", review, r)
	}
	if r := c.Warden(aliceHome, nil, "request", "review", id, "--approve", "--reason", "ok"); r.Code != 0 || !strings.Contains(r.Stdout, "PENDING (1/2") {
		t.Fatalf("first approval: %s", r)
	}
	if r := c.Warden(aliceHome, nil, "request", "review", id, "--approve"); r.Code == 0 || !strings.Contains(r.Stderr, "already reviewed") {
		t.Fatalf("duplicate review: %s", r)
	}
	// One approval of two is not enough.
	if r := c.Warden(home, nil, "request", "use", id); r.Code == 0 || !strings.Contains(r.Stderr, "pending") {
		t.Fatalf("use before approval: %s", r)
	}
	// approve has bob approve the request: access lasts its duration from
	// a moment after the time returned.
	approve := func() (approved time.Time) {
		t.Helper()
		approved = time.Now()
		if r := c.Warden(bobHome, nil, "request", "review", id, "--approve"); r.Code != 0 || !strings.Contains(r.Stdout, "APPROVED") {
			t.Fatalf("second approval: %s", r)
		}
		return approved
	}
	approved := approve()
	// An elevated session runs until the request (and the certificate)
	// expires; a new one is then refused. A request that expired before
	// a slow machine started the session is made again, twice as long.
	elevated := func() (cfg string, session *bgProcess, err error) {
		if r := c.Warden(home, nil, "request", "use", id); r.Code != 0 || !strings.Contains(r.Stdout, "prod-admin") {
			return "", nil, fmt.Errorf("use: %s", r)
		}
		if cfg, err = c.sshConfig(home); err != nil {
			return "", nil, err
		}
		session, err = startLive(t, sshArgs(cfg, osLogin+"@prod1", "echo elevated; "+liveCommand))
		return cfg, session, err
	}
	cfg, session, err := elevated()
	// (Certificates end on a whole second: up to one before the access.)
	for err != nil && time.Since(approved) > duration-time.Second {
		t.Logf("the request (%s) expired before the session started; again with a longer one", duration)
		duration *= 2
		home = c.Login(contractor)
		r := c.Warden(home, nil, "request", "create", "--roles", "prod-admin", "--reason", "INC-123", "--duration", duration.String(), "--nowait")
		if r.Code != 0 {
			t.Fatalf("request create: %s", r)
		}
		id = regexp.MustCompile(`Request (\S+) created`).FindStringSubmatch(r.Stdout)[1]
		if r := c.Warden(aliceHome, nil, "request", "review", id, "--approve"); r.Code != 0 {
			t.Fatalf("first approval: %s", r)
		}
		approved = approve()
		cfg, session, err = elevated()
	}
	if err != nil {
		t.Fatalf("ssh with the approved request: %v", err)
	}
	if !strings.Contains(session.out.String(), "elevated") {
		t.Fatalf("elevated session: %s", session.out.String())
	}
	wait, _ := liveWait(t, session)
	if r, _ := wait(); r.Code == 0 {
		t.Fatalf("session outlived the request: %s", r)
	}
	if r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@prod1", "true")...); r.Code == 0 {
		t.Fatalf("ssh after the request expired: %s", r)
	}
	// Every step is audited.
	for _, ev := range []string{"access_request.create", "access_request.review", "access_request.approved", "access_request.used", "notification.delivery"} {
		if r := c.Warden(t.TempDir(), nil, "audit", "search", "--type", ev, "-o", "json"); r.Code != 0 || !strings.Contains(r.Stdout, id) && ev != "notification.delivery" {
			t.Fatalf("audit %s: %s", ev, r)
		}
	}
}
