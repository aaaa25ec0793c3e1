package auth_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/notify"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/policy"
)

// okTransport answers every webhook with 200 without any network.
type okTransport struct{}

func (okTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}}, nil
}

// A review or revoke that meets a request past its pending expiry is refused
// and stores nothing; the sweeper then expires it, and access_request.expired
// is audited and notified exactly once.
func TestExpiredRequestIsRefusedAndSweptOnce(t *testing.T) {
	ctx := context.Background()
	var (
		mu       sync.Mutex
		notified = map[string]int{}
	)
	n, err := notify.New(notify.Config{
		Targets:    []notify.Target{{URL: "http://hooks.invalid/warden"}},
		HTTPClient: &http.Client{Transport: okTransport{}},
		OnResult: func(_ notify.Target, m notify.Message, _ int, err error) {
			if err != nil {
				t.Errorf("notification %s: %v", m.Event, err)
			}
			mu.Lock()
			notified[m.Event]++
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *auth.Config) {
		c.Notifier, c.RequestPendingTTL, c.SweepInterval = n, 10*time.Minute, time.Hour
	})
	a, b, clk := f.a, f.b, f.clock

	roles, err := policy.ParseRoles([]byte(`
kind: role
metadata: {name: ops-admin}
spec:
  allow:
    logins: [root]
---
kind: role
metadata: {name: requester}
spec:
  allow:
    request: {roles: [ops-admin]}
---
kind: role
metadata: {name: approver}
spec:
  allow:
    review_requests: {roles: [ops-admin]}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles {
		if err := a.UpsertRole(ctx, auth.AdminCaller(), r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.CreateUser(ctx, auth.AdminCaller(), auth.CreateUserRequest{Name: "alice", Roles: []string{"requester"}}); err != nil {
		t.Fatal(err)
	}
	alice := auth.Caller{Kind: auth.KindUser, User: "alice", Roles: []string{"requester"}}
	bob := auth.Caller{Kind: auth.KindUser, User: "bob", Roles: []string{"approver"}}

	// The role cache follows the backend's watch; retry until it has the roles.
	var req *access.Request
	for deadline := patience.Deadline(t); ; {
		req, err = a.CreateAccessRequest(ctx, alice, auth.CreateAccessRequest{Roles: []string{"ops-admin"}, Reason: "incident"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	clk.Advance(10*time.Minute + time.Second)
	wantExpired := "access request " + req.ID + " has expired"
	if _, err := a.ReviewAccessRequest(ctx, bob, req.ID, true, "lgtm"); !errors.Is(err, auth.ErrBadRequest) || !strings.Contains(err.Error(), wantExpired) {
		t.Fatalf("review of an expired request: err = %v, want %q", err, wantExpired)
	}
	if _, err := a.RevokeAccessRequest(ctx, alice, req.ID, "never mind"); !errors.Is(err, auth.ErrBadRequest) || !strings.Contains(err.Error(), wantExpired) {
		t.Fatalf("revoke of an expired request: err = %v, want %q", err, wantExpired)
	}
	// Readers see it expired, though nothing stored that yet.
	if got, err := a.GetAccessRequest(ctx, alice, req.ID); err != nil || got.State != access.StateExpired {
		t.Fatalf("get = %+v, %v; want EXPIRED", got, err)
	}

	// Two sweeps racing, then a later one: one of them expires it.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { auth.SweepRequests(a, ctx) })
	}
	wg.Wait()
	auth.SweepRequests(a, ctx)

	count := func(event string) int {
		t.Helper()
		evs, err := b.AuditLog().Search(ctx, audit.Query{Type: event})
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, ev := range evs {
			if ev.Fields["request_id"] == req.ID {
				k++
			}
		}
		return k
	}
	if k := count(audit.RequestExpired); k != 1 {
		t.Fatalf("%d %s events for %s, want 1", k, audit.RequestExpired, req.ID)
	}
	for _, ev := range []string{audit.RequestReview, audit.RequestApproved, audit.RequestRevoked} {
		if k := count(ev); k != 0 {
			t.Fatalf("%d %s events for a refused operation", k, ev)
		}
	}
	if got, err := a.GetAccessRequest(ctx, alice, req.ID); err != nil || got.State != access.StateExpired ||
		got.ResolveReason != "request expired before it was reviewed" {
		t.Fatalf("after the sweep: %+v, %v", got, err)
	}

	if err := n.Close(patience.Context(t)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if notified[audit.RequestExpired] != 1 || notified[audit.RequestCreate] != 1 || len(notified) != 2 {
		t.Fatalf("notifications = %v, want one create and one expired", notified)
	}
}
