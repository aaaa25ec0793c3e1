package policy

import (
	"strings"
	"testing"
)

const joinRoles = `
kind: role
metadata: {name: auditor}
spec:
  allow:
    join_sessions:
      - {roles: ['*'], modes: [observer]}
---
kind: role
metadata: {name: mentor}
spec:
  allow:
    join_sessions:
      - {roles: ['dev-*'], modes: [observer, peer]}
  deny:
    join_sessions:
      - {roles: [dev-secret], modes: [peer]}
`

func TestCanJoin(t *testing.T) {
	roles, err := ParseRoles([]byte(joinRoles))
	if err != nil {
		t.Fatal(err)
	}
	auditor, mentor := roles[:1], roles[1:]
	for _, tc := range []struct {
		name   string
		joiner []*Role
		owner  []string
		mode   string
		want   bool
	}{
		{"auditor observes anyone", auditor, []string{"access"}, JoinObserver, true},
		{"auditor may not type", auditor, []string{"access"}, JoinPeer, false},
		{"mentor joins dev-* as peer", mentor, []string{"access", "dev-web"}, JoinPeer, true},
		{"mentor observes dev-*", mentor, []string{"dev-web"}, JoinObserver, true},
		{"mentor not for others", mentor, []string{"access"}, JoinObserver, false},
		{"deny wins", mentor, []string{"dev-secret"}, JoinPeer, false},
		{"deny is per mode", mentor, []string{"dev-secret"}, JoinObserver, true},
		{"no rules, no join", nil, []string{"access"}, JoinObserver, false},
		{"unknown mode", roles, []string{"access"}, "moderator", false},
	} {
		if got := CanJoin(tc.joiner, tc.owner, tc.mode); got != tc.want {
			t.Errorf("%s: CanJoin = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestJoinSessionsValidation(t *testing.T) {
	for _, tc := range []struct{ rule, want string }{
		{`{roles: [], modes: [observer]}`, "join_sessions[0].roles"},
		{`{roles: ['*'], modes: []}`, "join_sessions[0].modes"},
		{`{roles: ['*'], modes: [moderator]}`, `unknown mode "moderator"`},
		{`{roles: ['[x'], modes: [peer]}`, `invalid pattern "[x"`},
	} {
		_, err := ParseRoles([]byte("kind: role\nmetadata: {name: r}\nspec:\n  allow:\n    join_sessions:\n      - " + tc.rule + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.rule, err, tc.want)
		}
	}
}

func TestJoinNotice(t *testing.T) {
	for _, tc := range []struct {
		user, mode string
		joined     bool
		want       string
	}{
		{"alice", JoinObserver, true, "\r\nwarden: alice joined this session as observer\r\n"},
		{"bob@example.com", JoinPeer, false, "\r\nwarden: bob@example.com (peer) left this session\r\n"},
		// Escape sequences, a C1 CSI, a bidi override, invalid UTF-8.
		{"ev\x1b]0;pwned\x07il\u009b2J\u202e\xff", JoinPeer, true, "\r\nwarden: ev?]0;pwned?il?2J?? joined this session as peer\r\n"},
		{strings.Repeat("é", 70), "\x1b[2J", true, "\r\nwarden: " + strings.Repeat("é", 64) + "… joined this session as ?\r\n"},
	} {
		if got := JoinNotice(tc.user, tc.mode, tc.joined); got != tc.want {
			t.Errorf("JoinNotice(%q, %q, %v) = %q, want %q", tc.user, tc.mode, tc.joined, got, tc.want)
		}
	}
}
