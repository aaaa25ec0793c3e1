package access

import (
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/warden-sh/warden/internal/policy"
)

func TestNewValidation(t *testing.T) {
	dev := role("dev", func(s *policy.RoleSpec) {
		s.Allow.Request = &policy.RequestConditions{Roles: policy.Strings{"db-*", "ops"}}
		s.Deny.Request = &policy.RequestConditions{Roles: policy.Strings{"db-admin"}}
	})
	strict := requester("strict", policy.RequestConditions{Roles: policy.Strings{"prod"}, ReasonRequired: true,
		MaxDuration: policy.Duration(2 * time.Hour)})
	plain := role("plain", nil)
	tests := []struct {
		name  string
		p     CreateParams
		kind  error
		frag  string
		roles []string
	}{
		{name: "glob allows", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev}, Roles: []string{"db-read"}}, roles: []string{"db-read"}},
		{name: "exact allows, duplicates dropped", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev}, Roles: []string{"ops", "db-read", "ops"}}, roles: []string{"ops", "db-read"}},
		{name: "no roles", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev}}, kind: ErrInvalid, frag: "at least one role"},
		{name: "no user", p: CreateParams{UserRoles: []*policy.Role{dev}, Roles: []string{"ops"}}, kind: ErrInvalid, frag: "user"},
		{name: "deny.request wins over glob", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev}, Roles: []string{"db-admin"}}, kind: ErrDenied, frag: `requesting role "db-admin"`},
		{name: "deny.request in another role", p: CreateParams{User: "alice", UserRoles: []*policy.Role{
			requester("any", policy.RequestConditions{Roles: policy.Strings{"*"}}),
			role("nope", func(s *policy.RoleSpec) { s.Deny.Request = &policy.RequestConditions{Roles: policy.Strings{"prod"}} }),
		}, Roles: []string{"prod"}}, kind: ErrDenied, frag: `"prod"`},
		{name: "not allowed", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev}, Roles: []string{"prod"}}, kind: ErrDenied, frag: `requesting role "prod"`},
		{name: "one of several not allowed", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev}, Roles: []string{"ops", "prod"}}, kind: ErrDenied, frag: `"prod"`},
		{name: "no request conditions", p: CreateParams{User: "alice", UserRoles: []*policy.Role{plain}, Roles: []string{"ops"}}, kind: ErrDenied, frag: `"ops"`},
		{name: "does not exist", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev}, Roles: []string{"db-ghost"}}, kind: ErrInvalid, frag: `role "db-ghost" does not exist`},
		{name: "already held", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev, role("ops", nil)}, Roles: []string{"ops"}}, kind: ErrInvalid, frag: `already have role "ops"`},
		{name: "glob in requested name refused", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev}, Roles: []string{"db-*"}}, kind: ErrInvalid, frag: "invalid role name"},
		{name: "reason required", p: CreateParams{User: "alice", UserRoles: []*policy.Role{strict}, Roles: []string{"prod"}}, kind: ErrInvalid, frag: "reason is required"},
		{name: "blank reason is no reason", p: CreateParams{User: "alice", UserRoles: []*policy.Role{strict}, Roles: []string{"prod"}, Reason: "  "}, kind: ErrInvalid, frag: "reason is required"},
		{name: "reason given", p: CreateParams{User: "alice", UserRoles: []*policy.Role{strict}, Roles: []string{"prod"}, Reason: "INC-1"}, roles: []string{"prod"}},
		{name: "duration over max", p: CreateParams{User: "alice", UserRoles: []*policy.Role{strict}, Roles: []string{"prod"}, Reason: "x", Duration: 3 * time.Hour}, kind: ErrInvalid, frag: "maximum of 2h0m0s"},
		{name: "negative duration", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev}, Roles: []string{"ops"}, Duration: -time.Second}, kind: ErrInvalid, frag: "negative"},
		{name: "reason too long", p: CreateParams{User: "alice", UserRoles: []*policy.Role{dev}, Roles: []string{"ops"}, Reason: string(make([]byte, MaxReasonLen+1))}, kind: ErrInvalid, frag: "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.ExistingRoles = allExisting
			tc.p.Now = t0
			r, err := New(tc.p)
			wantErr(t, err, tc.kind, tc.frag)
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.roles, r.Roles); diff != "" {
				t.Errorf("roles (-want +got):\n%s", diff)
			}
			if r.State != StatePending {
				t.Errorf("state = %s, want PENDING", r.State)
			}
		})
	}
}

func TestNewRequiresExistingRoles(t *testing.T) {
	_, err := New(CreateParams{User: "a", Roles: []string{"x"}})
	if err == nil {
		t.Fatal("New without ExistingRoles succeeded")
	}
}

func TestNewResolvesConditions(t *testing.T) {
	a := requester("a", policy.RequestConditions{Roles: policy.Strings{"db-*"}, MaxDuration: policy.Duration(4 * time.Hour),
		Thresholds: policy.Thresholds{Approve: 2, Deny: 3}, SuggestedReviewers: policy.Strings{"bob", "carol"}})
	b := requester("b", policy.RequestConditions{Roles: policy.Strings{"db-read"}, MaxDuration: policy.Duration(time.Hour),
		Thresholds: policy.Thresholds{Approve: 3, Deny: 2}, SuggestedReviewers: policy.Strings{"carol", "alice", "dave"}})
	c := requester("c", policy.RequestConditions{Roles: policy.Strings{"ops"}})
	tests := []struct {
		name       string
		roles      []*policy.Role
		req        []string
		duration   time.Duration
		thresholds policy.Thresholds
		maxDur     time.Duration
		dur        time.Duration
		reviewers  []string
	}{
		{name: "defaults", roles: []*policy.Role{c}, req: []string{"ops"},
			thresholds: policy.Thresholds{Approve: 1, Deny: 1}, maxDur: DefaultMaxDuration, dur: DefaultMaxDuration},
		{name: "single condition", roles: []*policy.Role{a}, req: []string{"db-admin"},
			thresholds: policy.Thresholds{Approve: 2, Deny: 3}, maxDur: 4 * time.Hour, dur: 4 * time.Hour,
			reviewers: []string{"dan", "bob", "carol"}},
		{name: "max approve, min deny, min duration, merged reviewers without requester", roles: []*policy.Role{a, b}, req: []string{"db-read"},
			thresholds: policy.Thresholds{Approve: 3, Deny: 2}, maxDur: time.Hour, dur: 30 * time.Minute, duration: 30 * time.Minute,
			reviewers: []string{"dan", "bob", "carol", "dave"}},
		{name: "unset deny counts as 1", roles: []*policy.Role{a, c}, req: []string{"db-admin", "ops"},
			thresholds: policy.Thresholds{Approve: 2, Deny: 1}, maxDur: 4 * time.Hour, dur: 4 * time.Hour,
			reviewers: []string{"dan", "bob", "carol"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustNew(t, CreateParams{User: "alice", UserRoles: tc.roles, Roles: tc.req, Duration: tc.duration,
				Reviewers: []string{"dan", "", "bob"}})
			if r.Thresholds != tc.thresholds {
				t.Errorf("thresholds = %+v, want %+v", r.Thresholds, tc.thresholds)
			}
			if r.MaxDuration != tc.maxDur || r.Duration != tc.dur {
				t.Errorf("max/duration = %s/%s, want %s/%s", r.MaxDuration, r.Duration, tc.maxDur, tc.dur)
			}
			want := tc.reviewers
			if want == nil {
				want = []string{"dan", "bob"}
			}
			if diff := cmp.Diff(want, r.Reviewers); diff != "" {
				t.Errorf("reviewers (-want +got):\n%s", diff)
			}
			if !r.PendingExpires.Equal(t0.Add(DefaultPendingTTL)) || !r.Created.Equal(t0) {
				t.Errorf("created %s pending expires %s", r.Created, r.PendingExpires)
			}
		})
	}
}

func TestNewIDAndJSON(t *testing.T) {
	p := CreateParams{User: "alice", UserRoles: []*policy.Role{requester("r", policy.RequestConditions{Roles: policy.Strings{"ops"}})},
		Roles: []string{"ops"}, PendingTTL: 10 * time.Minute}
	a, b := mustNew(t, p), mustNew(t, p)
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if !uuid.MatchString(a.ID) || a.ID == b.ID {
		t.Fatalf("ids %q %q", a.ID, b.ID)
	}
	if !a.PendingExpires.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("pending expires %s", a.PendingExpires)
	}
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "user", "roles", "state", "thresholds", "max_duration", "duration", "created", "pending_expires"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, data)
		}
	}
	for _, k := range []string{"access_expires", "resolved"} {
		if _, ok := m[k]; ok {
			t.Errorf("JSON of a pending request has %q: %s", k, data)
		}
	}
	var back Request
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, &back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
}

func TestErrorKinds(t *testing.T) {
	c := conflictf("x")
	if !errors.Is(c, ErrConflict) || !errors.Is(c, ErrInvalid) || errors.Is(c, ErrDenied) {
		t.Errorf("conflict error kinds wrong")
	}
	d := deniedf("x")
	if !errors.Is(d, ErrDenied) || errors.Is(d, ErrInvalid) {
		t.Errorf("denied error kinds wrong")
	}
}

func TestMatchRole(t *testing.T) {
	tests := []struct {
		patterns []string
		name     string
		want     bool
	}{
		{[]string{"*"}, "anything", true},
		{[]string{"db-*"}, "db-read", true},
		{[]string{"db-*"}, "dbread", false},
		{[]string{"db-?"}, "db-1", true},
		{[]string{"[a-c]x"}, "bx", true},
		{[]string{"[a-c"}, "[a-c", true}, // exact match of a malformed glob is still the same name
		{[]string{"[a-c"}, "a", false},
		{[]string{"ops"}, "ops", true},
		{[]string{"ops"}, "ops2", false},
		{nil, "ops", false},
	}
	for _, tc := range tests {
		if got := policy.MatchRole(tc.patterns, tc.name); got != tc.want {
			t.Errorf("policy.MatchRole(%q, %q) = %v, want %v", tc.patterns, tc.name, got, tc.want)
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	r := mustNew(t, CreateParams{User: "alice", UserRoles: []*policy.Role{requester("r", policy.RequestConditions{Roles: policy.Strings{"*"}})},
		Roles: []string{"ops"}, Reviewers: []string{"bob"}})
	c := r.Clone()
	c.Roles[0] = "admin"
	c.Reviewers[0] = "eve"
	if r.Roles[0] != "ops" || r.Reviewers[0] != "bob" {
		t.Fatal("Clone shares slices")
	}
}

func TestFields(t *testing.T) {
	r := mustNew(t, CreateParams{User: "alice", UserRoles: []*policy.Role{requester("r", policy.RequestConditions{Roles: policy.Strings{"*"}})},
		Roles: []string{"ops"}, Reason: "deploy"})
	if _, err := r.AddReview("bob", reviewer("*"), true, "ok", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	f := r.Fields()
	if f["id"] != r.ID || f["state"] != StateApproved || f["approvals"] != 1 || f["reason"] != "deploy" ||
		f["last_review_author"] != "bob" || f["access_expires"] == nil {
		t.Errorf("fields = %v", f)
	}
	if _, err := json.Marshal(f); err != nil {
		t.Errorf("fields do not marshal: %v", err)
	}
}

// FuzzNewRequestRoles feeds arbitrary requested role names and patterns to
// New: it must never panic, and a request it accepts must only contain
// roles that a pattern matches and that exist.
func FuzzNewRequestRoles(f *testing.F) {
	f.Add("db-*", "db-read", "db-admin")
	f.Add("*", "x", "")
	f.Add("[", "[", "a")
	f.Add("a?c", "abc", "a/c")
	f.Fuzz(func(t *testing.T, pattern, want1, want2 string) {
		roles := []*policy.Role{requester("r", policy.RequestConditions{Roles: policy.Strings{pattern}})}
		req, err := New(CreateParams{User: "u", UserRoles: roles, Roles: []string{want1, want2},
			ExistingRoles: func(string) bool { return true }, Now: t0})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is not *Error: %v", err)
			}
			return
		}
		for _, n := range req.Roles {
			if !policy.MatchRole([]string{pattern}, n) || checkRoleName(n) != nil {
				t.Fatalf("accepted role %q with pattern %q", n, pattern)
			}
		}
	})
}
