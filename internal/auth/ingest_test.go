package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
)

func (f *fixture) events(q audit.Query) []audit.Event {
	f.t.Helper()
	evs, err := f.b.AuditLog().Search(context.Background(), q)
	if err != nil {
		f.t.Fatal(err)
	}
	return evs
}

// TestEventsOnlyFromTheirEmitter: a node may hand auth only node events; a
// forged user.login or lock.deleted is refused (the whole batch), and the
// refusal audited once however often the node retries. What is accepted
// carries auth's receive time and the sender's identity, whatever the
// sender wrote there.
func TestEventsOnlyFromTheirEmitter(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	node := f.joinNode("web1")
	forgedTime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	forged := []audit.Event{
		{ID: "f1", Event: audit.UserLogin, Code: audit.CodeLoginSuccess, User: "alice", Success: true, Time: forgedTime},
		{ID: "f2", Event: audit.LockDeleted, User: "admin", Success: true, Time: forgedTime},
		{ID: "f3", Event: audit.SessionStart, SessionID: "s0", User: "alice", Success: true},
	}
	for range 3 { // the node's journal retries
		err := f.a.EmitEvents(ctx, node, forged)
		if !errors.Is(err, auth.ErrAccessDenied) || !strings.Contains(err.Error(), `a node may not emit "user.login", "lock.deleted" events`) {
			t.Fatalf("forged events: %v, want access denied naming them", err)
		}
	}
	for _, typ := range []string{audit.UserLogin, audit.LockDeleted, audit.SessionStart} {
		if evs := f.events(audit.Query{Type: typ}); len(evs) != 0 {
			t.Fatalf("forged %s stored: %+v", typ, evs)
		}
	}
	refused := f.events(audit.Query{Type: audit.EventRefused})
	if len(refused) != 1 || refused[0].Fields["emitter"] != "node:"+node.NodeID || refused[0].Node != "web1" || refused[0].Success {
		t.Fatalf("audit.event_refused events %+v, want one from node:%s", refused, node.NodeID)
	}

	own := audit.Event{ID: "s1", Event: audit.SessionStart, SessionID: "s1", User: "dev", Success: true, Code: audit.CodeLoginSuccess,
		Time: forgedTime, Node: "someone-else", Fields: map[string]any{"emitter": "auth", "node_id": "other", "kind": "shell"}}
	if err := f.a.EmitEvents(ctx, node, []audit.Event{own}); err != nil {
		t.Fatal(err)
	}
	got := f.events(audit.Query{SessionID: "s1"})
	if len(got) != 1 {
		t.Fatalf("session.start stored %d times", len(got))
	}
	ev := got[0]
	if !ev.Time.Equal(f.clock.Now()) || ev.Fields["emitter_time"] != "2001-02-03T04:05:06Z" {
		t.Errorf("time %s (claimed %v), want auth's receive time %s and the claim kept", ev.Time, ev.Fields["emitter_time"], f.clock.Now())
	}
	if ev.Fields["emitter"] != "node:"+node.NodeID || ev.Fields["node_id"] != node.NodeID || ev.Node != "web1" || ev.Code != "" {
		t.Errorf("stored %+v, want emitter node:%s, node web1, no code", ev, node.NodeID)
	}

	// Users and admins emit nothing; the proxy (in process) only its own.
	exec := []audit.Event{{Event: audit.Exec, Success: true}}
	if err := f.a.EmitEvents(ctx, auth.Caller{Kind: auth.KindUser, User: "dev", Roles: []string{"access"}}, exec); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("user emitted exec: %v", err)
	}
	if err := f.a.EmitEvents(ctx, auth.AdminCaller(), exec); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("admin emitted exec: %v", err)
	}
	proxy := f.a.Emitter(auth.ProxyCaller())
	if err := proxy.Emit(ctx, audit.Event{Event: audit.UserLogin, User: "alice", Success: true}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("proxy emitted user.login: %v", err)
	}
	if err := proxy.Emit(ctx, audit.Event{Event: audit.ProxyDisconnect, User: "dev", Node: "web1", Success: true}); err != nil {
		t.Fatal(err)
	}
	if evs := f.events(audit.Query{Type: audit.ProxyDisconnect}); len(evs) != 1 || evs[0].Fields["emitter"] != "proxy" || evs[0].Node != "web1" {
		t.Errorf("proxy.disconnect events %+v", evs)
	}
	if n := len(f.events(audit.Query{Type: audit.EventRefused})); n != 4 {
		t.Errorf("%d refusals audited, want 4 (node, user, admin, proxy)", n)
	}
}
