package ca

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSessionMFAMarkRoundTrip(t *testing.T) {
	a := testAuthority(t)
	req := baseUserRequest(t)
	req.SessionMFA = &SessionMFA{Nodes: []string{"n-1", "n-2"}, MaxSessions: 2}
	req.TTL = time.Minute
	c, err := a.IssueUser(req)
	if err != nil {
		t.Fatal(err)
	}
	id, err := IdentityFromSSHCert(c)
	if err != nil {
		t.Fatal(err)
	}
	if id.SessionMFA == nil || !slices.Equal(id.SessionMFA.Nodes, []string{"n-1", "n-2"}) || id.SessionMFA.MaxSessions != 2 {
		t.Fatalf("mark = %+v", id.SessionMFA)
	}
	for _, bad := range []*SessionMFA{{}, {Nodes: []string{"../x"}, MaxSessions: 1}, {Nodes: []string{"n"}, MaxSessions: 0}, {Nodes: []string{"n"}, MaxSessions: 1000}} {
		req.SessionMFA = bad
		if _, err := a.IssueUser(req); err == nil {
			t.Errorf("issued with mark %+v", bad)
		}
	}
}

func FuzzSessionMFAExt(f *testing.F) {
	f.Add(`{"nodes":["n-1"],"max_sessions":1}`)
	f.Add(`{"nodes":["n-1"],"max_sessions":1,"x":1}`)
	f.Add(`{"nodes":[` + strings.Repeat(`"n",`, 200) + `"n"],"max_sessions":1}`)
	f.Add(`{"nodes":null,"max_sessions":-1} {}`)
	f.Fuzz(func(t *testing.T, v string) {
		m, err := decodeSessionMFA(v)
		if err != nil {
			return
		}
		if m.validate() != nil || len(m.Nodes) == 0 {
			t.Fatalf("accepted an invalid mark %q", v)
		}
	})
}
