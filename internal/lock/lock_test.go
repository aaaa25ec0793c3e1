package lock

import (
	"testing"
	"time"
)

func TestSetCheck(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	s := NewSet()
	s.Replace([]*Lock{
		{ID: "u", Target: Target{User: "mallory"}, Message: "investigating"},
		{ID: "r", Target: Target{Role: "contractor"}, Expires: now.Add(time.Minute)},
		{ID: "old", Target: Target{Login: "root"}, Expires: now.Add(-time.Second)},
		{ID: "n", Target: Target{Node: "db1"}},
		{ID: "q", Target: Target{Request: "req-1"}},
		{ID: "m", Target: Target{MFADevice: "totp-1"}},
		{ID: "s", Target: Target{Session: "0a1b2c"}},
	})
	for _, tc := range []struct {
		name string
		sub  Subject
		want string
	}{
		{"user", Subject{User: "mallory", Login: "dev"}, "u"},
		{"role", Subject{User: "bob", Roles: []string{"access", "contractor"}}, "r"},
		{"expired lock ignored", Subject{User: "bob", Login: "root"}, ""},
		{"node by name", Subject{User: "bob", Node: "db1"}, "n"},
		{"node by id", Subject{User: "bob", Node: "x", NodeID: "db1"}, "n"},
		{"request", Subject{User: "bob", Requests: []string{"req-0", "req-1"}}, "q"},
		{"MFA device", Subject{User: "bob", MFADevices: []string{"totp-1"}}, "m"},
		{"session", Subject{User: "bob", Sessions: []string{"ffff", "0a1b2c"}}, "s"},
		{"another session", Subject{User: "bob", Sessions: []string{"0a1b2d"}}, ""},
		{"nothing", Subject{User: "bob", Roles: []string{"access"}, Login: "dev", Node: "web1"}, ""},
	} {
		got := s.Check(tc.sub, now)
		if (got == nil && tc.want != "") || (got != nil && got.ID != tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, got, tc.want)
		}
		// Matching (then CoversIssued) finds the same lock.
		if m := s.Matching(tc.sub, now); (len(m) == 0) != (tc.want == "") || len(m) > 0 && m[0].ID != tc.want {
			t.Errorf("%s: Matching = %v, want %q", tc.name, m, tc.want)
		}
		if got != nil && !got.Matches(tc.sub) {
			t.Errorf("%s: Check returned a lock that does not Match", tc.name)
		}
	}
	// Expiry is evaluated at check time: no cache to wait for.
	if s.Check(Subject{Roles: []string{"contractor"}}, now.Add(2*time.Minute)) != nil {
		t.Error("role lock still in force after expiry")
	}
	s.Delete("u")
	if s.Check(Subject{User: "mallory"}, now) != nil {
		t.Error("deleted lock still in force")
	}
	s.Put(&Lock{ID: "u2", Target: Target{User: "mallory"}})
	s.Put(&Lock{ID: "u2", Target: Target{User: "eve"}}) // replaced: retargeted
	if s.Check(Subject{User: "mallory"}, now) != nil || s.Check(Subject{User: "eve"}, now) == nil {
		t.Error("Put did not replace the lock's target")
	}
}

// TestIssuedNotAfter: a lock limited by issue time applies to certificates
// issued up to that instant, and to no subject without an issue time.
func TestIssuedNotAfter(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	at := now.Add(-time.Hour)
	s := NewSet()
	s.Replace([]*Lock{{ID: "gen", Target: Target{User: "zed"}, IssuedNotAfter: at, Expires: now.Add(time.Hour)}})
	for _, tc := range []struct {
		name   string
		issued time.Time
		want   bool
	}{
		{"issued before", at.Add(-time.Nanosecond), true},
		{"issued at the instant", at, true},
		{"issued after", at.Add(time.Nanosecond), false},
		{"no certificate", time.Time{}, false},
	} {
		sub := Subject{User: "zed", Issued: tc.issued}
		if got := s.Check(sub, now) != nil; got != tc.want {
			t.Errorf("%s: Check = %v, want %v", tc.name, got, tc.want)
		}
		if got := s.List()[0].Matches(sub); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
		m := s.Matching(sub, now)
		if len(m) != 1 || m[0].CoversIssued(tc.issued) != tc.want {
			t.Errorf("%s: Matching = %v, CoversIssued want %v", tc.name, m, tc.want)
		}
	}
	// An ordinary lock on the same target still applies to everything.
	s.Put(&Lock{ID: "all", Target: Target{User: "zed"}})
	if l := s.Check(Subject{User: "zed", Issued: at.Add(time.Second)}, now); l == nil || l.ID != "all" {
		t.Errorf("ordinary lock behind a limited one: got %v", l)
	}
}

func TestTargetValidate(t *testing.T) {
	for _, tc := range []struct {
		t  Target
		ok bool
	}{
		{Target{User: "alice"}, true},
		{Target{Node: "6f1c-id.example"}, true},
		{Target{}, false},
		{Target{User: "a", Role: "b"}, false},
		{Target{User: "bad name"}, false},
		{Target{Login: "-rf"}, false},
	} {
		if err := tc.t.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: err=%v", tc.t, err)
		}
	}
	if _, err := ParseTarget("user=alice"); err != nil {
		t.Error(err)
	}
	if tg, err := ParseTarget("session=0a1b2c"); err != nil || tg.Session != "0a1b2c" || tg.String() != "session=0a1b2c" {
		t.Errorf("session target: %+v %v", tg, err)
	}
	if _, err := ParseTarget("color=red"); err == nil {
		t.Error("unknown kind accepted")
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"user=alice", "role=x", "node=a.b", "request=1", "=", "user="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			return
		}
		if tg.Validate() != nil {
			t.Fatalf("ParseTarget accepted invalid %q", s)
		}
		back, err := ParseTarget(tg.String())
		if err != nil || back != tg {
			t.Fatalf("round trip %q -> %+v -> %v %+v", s, tg, err, back)
		}
	})
}

func BenchmarkCheckNoMatch(b *testing.B) {
	s := NewSet()
	var locks []*Lock
	for i := 0; i < 1000; i++ {
		locks = append(locks, &Lock{ID: string(rune(i)), Target: Target{User: "u" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))}})
	}
	s.Replace(locks)
	sub := Subject{User: "alice", Roles: []string{"access", "dev"}, Login: "dev", Node: "web1", NodeID: "id"}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if s.Check(sub, now) != nil {
			b.Fatal("unexpected lock")
		}
	}
}
