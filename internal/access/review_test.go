package access

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/policy"
)

// step is one operation on a request in a state-machine test.
type step struct {
	at time.Duration // after t0
	// exactly one of the following
	review  string // reviewer name; uses roles (default: may review "*")
	expire  bool
	revoke  bool
	usable  string // user for Usable
	approve bool
	roles   []*policy.Role

	kind        error // expected error kind (nil: success)
	frag        string
	changed     bool // for review and expire
	state       string
	approvals   int
	denials     int
	checkCounts bool
}

func TestStateMachine(t *testing.T) {
	twoOfTwo := policy.RequestConditions{Roles: policy.Strings{"*"}, Thresholds: policy.Thresholds{Approve: 2, Deny: 2}}
	oneOne := policy.RequestConditions{Roles: policy.Strings{"*"}, MaxDuration: policy.Duration(2 * time.Hour)}
	min := time.Minute
	tests := []struct {
		name  string
		cond  policy.RequestConditions
		roles []string
		steps []step
	}{
		{name: "1 of 2 approvals is not enough, 2 distinct grant", cond: twoOfTwo, steps: []step{
			{at: min, review: "bob", approve: true, changed: true, state: StatePending, approvals: 1, checkCounts: true},
			{at: 2 * min, usable: "alice", kind: ErrDenied, frag: "still pending (1 of 2 approvals)"},
			{at: 3 * min, review: "carol", approve: true, changed: true, state: StateApproved, approvals: 2, checkCounts: true},
			{at: 4 * min, usable: "alice"},
		}},
		{name: "duplicate review refused and counts once", cond: twoOfTwo, steps: []step{
			{at: min, review: "bob", approve: true, changed: true, state: StatePending},
			{at: 2 * min, review: "bob", approve: true, kind: ErrConflict, frag: "you already reviewed this request", state: StatePending, approvals: 1, checkCounts: true},
			{at: 2 * min, review: "bob", approve: false, kind: ErrConflict, frag: "already reviewed", state: StatePending, approvals: 1, denials: 0, checkCounts: true},
		}},
		{name: "deny threshold", cond: twoOfTwo, steps: []step{
			{at: min, review: "bob", approve: false, changed: true, state: StatePending, denials: 1, checkCounts: true},
			{at: min, review: "carol", approve: true, changed: true, state: StatePending, approvals: 1, denials: 1, checkCounts: true},
			{at: min, review: "dave", approve: false, changed: true, state: StateDenied, approvals: 1, denials: 2, checkCounts: true},
			{at: 2 * min, review: "erin", approve: true, kind: ErrConflict, frag: "is denied", state: StateDenied},
			{at: 2 * min, usable: "alice", kind: ErrDenied, frag: "was denied"},
			{at: 2 * min, revoke: true, kind: ErrConflict, frag: "cannot be revoked", state: StateDenied},
		}},
		{name: "single denial denies by default", cond: oneOne, steps: []step{
			{at: min, review: "bob", approve: false, changed: true, state: StateDenied},
		}},
		{name: "self review refused", cond: oneOne, steps: []step{
			{at: min, review: "alice", approve: true, kind: ErrDenied, frag: "your own", state: StatePending, checkCounts: true},
		}},
		{name: "reviewer without review_requests refused", cond: oneOne, steps: []step{
			{at: min, review: "bob", roles: []*policy.Role{role("plain", nil)}, approve: true, kind: ErrDenied, frag: "do not allow reviewing", state: StatePending},
			{at: min, review: "bob", roles: reviewer("db-*"), approve: true, kind: ErrDenied, frag: "do not allow reviewing", state: StatePending},
		}},
		{name: "review after pending expiry is refused and leaves expiry to Expire", cond: oneOne, steps: []step{
			{at: 59 * min, review: "bob", roles: []*policy.Role{role("plain", nil)}, approve: true, kind: ErrDenied, state: StatePending},
			{at: time.Hour, review: "bob", approve: true, kind: ErrConflict, frag: "has expired: it was not reviewed before 2026-11-03T11:00:00Z", state: StatePending},
			{at: time.Hour, usable: "alice", kind: ErrDenied, frag: "expired at 2026-11-03T11:00:00Z"},
			{at: time.Hour, revoke: true, kind: ErrConflict, frag: "has expired", state: StatePending},
			{at: time.Hour, expire: true, changed: true, state: StateExpired},
			{at: time.Hour, review: "carol", approve: true, kind: ErrConflict, frag: "is expired", state: StateExpired},
		}},
		{name: "expire pending", cond: oneOne, steps: []step{
			{at: 59 * min, expire: true, changed: false, state: StatePending},
			{at: 90 * min, usable: "alice", kind: ErrDenied, frag: "before it was approved"},
			{at: 90 * min, expire: true, changed: true, state: StateExpired},
			{at: 91 * min, expire: true, changed: false, state: StateExpired},
			{at: 91 * min, revoke: true, kind: ErrConflict, frag: "expired", state: StateExpired},
		}},
		{name: "expire approved after duration", cond: oneOne, steps: []step{
			{at: min, review: "bob", approve: true, changed: true, state: StateApproved},
			{at: 2*time.Hour + min - time.Nanosecond, usable: "alice"},
			{at: 2*time.Hour + min - time.Nanosecond, expire: true, changed: false, state: StateApproved},
			{at: 2*time.Hour + min, usable: "alice", kind: ErrDenied, frag: "expired at 2026-11-03T12:01:00Z"},
			{at: 2*time.Hour + min, review: "carol", approve: true, kind: ErrConflict, frag: "has expired: its access ended at 2026-11-03T12:01:00Z", state: StateApproved},
			{at: 2*time.Hour + min, revoke: true, kind: ErrConflict, frag: "has expired", state: StateApproved},
			{at: 2*time.Hour + min, expire: true, changed: true, state: StateExpired},
			{at: 3 * time.Hour, usable: "alice", kind: ErrDenied, frag: "expired at 2026-11-03T12:01:00Z"},
			{at: 3 * time.Hour, review: "carol", approve: true, kind: ErrConflict, state: StateExpired},
		}},
		{name: "revoke approved", cond: oneOne, steps: []step{
			{at: min, review: "bob", approve: true, changed: true, state: StateApproved},
			{at: 2 * min, revoke: true, state: StateRevoked},
			{at: 2 * min, usable: "alice", kind: ErrDenied, frag: "was revoked"},
			{at: 3 * min, revoke: true, kind: ErrConflict, frag: "is revoked", state: StateRevoked},
			{at: 3 * min, expire: true, changed: false, state: StateRevoked},
		}},
		{name: "revoke pending", cond: twoOfTwo, steps: []step{
			{at: min, review: "bob", approve: true, changed: true, state: StatePending},
			{at: 2 * min, revoke: true, state: StateRevoked},
			{at: 3 * min, review: "carol", approve: true, kind: ErrConflict, frag: "revoked", state: StateRevoked},
		}},
		{name: "approved request is usable only by its requester", cond: oneOne, steps: []step{
			{at: min, review: "bob", approve: true, changed: true, state: StateApproved},
			{at: 2 * min, usable: "bob", kind: ErrDenied, frag: "not made by you"},
			{at: 2 * min, usable: "alice"},
		}},
		{name: "review of already approved refused", cond: oneOne, steps: []step{
			{at: min, review: "bob", approve: true, changed: true, state: StateApproved},
			{at: min, review: "carol", approve: false, kind: ErrConflict, frag: "already approved", state: StateApproved, approvals: 1, checkCounts: true},
		}},
		{name: "reviewer must cover every requested role", cond: oneOne, roles: []string{"db-read", "ops"}, steps: []step{
			{at: min, review: "bob", roles: reviewer("db-*"), approve: true, kind: ErrDenied, state: StatePending},
			{at: min, review: "bob", roles: append(reviewer("db-*"), reviewer("ops")...), approve: true, changed: true, state: StateApproved},
		}},
		{name: "deny.review_requests wins", cond: oneOne, roles: []string{"prod"}, steps: []step{
			{at: min, review: "bob", roles: append(reviewer("*"), role("no-prod", func(s *policy.RoleSpec) {
				s.Deny.ReviewRequests = &policy.ReviewConditions{Roles: policy.Strings{"pro?"}}
			})), approve: true, kind: ErrDenied, state: StatePending},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			roles := tc.roles
			if roles == nil {
				roles = []string{"ops"}
			}
			r := mustNew(t, CreateParams{User: "alice", UserRoles: []*policy.Role{requester("req", tc.cond)}, Roles: roles})
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				var err error
				changed := false
				switch {
				case s.review != "":
					rr := s.roles
					if rr == nil {
						rr = reviewer("*")
					}
					before := *r
					changed, err = r.AddReview(s.review, rr, s.approve, "because", now)
					if err != nil && (changed || !reflect.DeepEqual(*r, before)) {
						t.Fatalf("step %d: a refused review changed the request (changed = %v)", i, changed)
					}
				case s.expire:
					changed = r.Expire(now)
				case s.revoke:
					before := *r
					err = r.Revoke(now, "done")
					if err != nil && !reflect.DeepEqual(*r, before) {
						t.Fatalf("step %d: a refused revoke changed the request", i)
					}
				case s.usable != "":
					err = r.Usable(s.usable, now)
				default:
					t.Fatalf("step %d: no operation", i)
				}
				wantErr(t, err, s.kind, s.frag)
				if (s.review != "" || s.expire) && changed != s.changed {
					t.Fatalf("step %d: changed = %v, want %v", i, changed, s.changed)
				}
				if s.state != "" && r.State != s.state {
					t.Fatalf("step %d: state = %s, want %s", i, r.State, s.state)
				}
				if s.checkCounts && (r.Approvals() != s.approvals || r.Denials() != s.denials) {
					t.Fatalf("step %d: approvals/denials = %d/%d, want %d/%d", i, r.Approvals(), r.Denials(), s.approvals, s.denials)
				}
			}
		})
	}
}

func TestApprovalSetsTimes(t *testing.T) {
	r := mustNew(t, CreateParams{User: "alice", UserRoles: []*policy.Role{requester("r", policy.RequestConditions{Roles: policy.Strings{"*"}})},
		Roles: []string{"ops"}, Duration: 30 * time.Minute})
	at := t0.Add(10 * time.Minute)
	if _, err := r.AddReview("bob", reviewer("*"), true, "", at); err != nil {
		t.Fatal(err)
	}
	if !r.AccessExpires.Equal(at.Add(30*time.Minute)) || !r.Resolved.Equal(at) || r.ResolveReason == "" {
		t.Errorf("access expires %s resolved %s %q", r.AccessExpires, r.Resolved, r.ResolveReason)
	}
	if len(r.Reviews) != 1 || r.Reviews[0] != (Review{Author: "bob", Approve: true, Time: at}) {
		t.Errorf("reviews = %+v", r.Reviews)
	}
}

func TestDuplicateReviewsInStoredDataCountOnce(t *testing.T) {
	r := &Request{Reviews: []Review{{Author: "bob", Approve: true}, {Author: "bob", Approve: true}, {Author: "bob", Approve: false}, {Author: "c", Approve: false}}}
	if r.Approvals() != 1 || r.Denials() != 1 {
		t.Errorf("approvals/denials = %d/%d, want 1/1", r.Approvals(), r.Denials())
	}
}

// TestRequestCannotBeWidened guards the rule that the requested roles are
// fixed at creation: no method of Request may change them. A new method
// must be added here deliberately, after checking it does not touch Roles.
func TestRequestCannotBeWidened(t *testing.T) {
	var got []string
	typ := reflect.TypeFor[*Request]()
	for i := range typ.NumMethod() {
		got = append(got, typ.Method(i).Name)
	}
	want := []string{"AddReview", "Approvals", "Clone", "Denials", "Expire", "Fields", "Revoke", "Usable"}
	if !slices.Equal(got, want) {
		t.Fatalf("Request methods = %v, want %v", got, want)
	}
	r := mustNew(t, CreateParams{User: "alice", UserRoles: []*policy.Role{requester("r", policy.RequestConditions{Roles: policy.Strings{"db-*"}})},
		Roles: []string{"db-read"}})
	before := slices.Clone(r.Roles)
	if _, err := r.AddReview("bob", reviewer("*"), true, "", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	r.Fields()
	r.Usable("alice", t0.Add(2*time.Minute))
	r.Expire(t0.Add(time.Hour))
	if !slices.Equal(before, r.Roles) {
		t.Fatalf("roles changed from %v to %v", before, r.Roles)
	}
}

func TestCanReview(t *testing.T) {
	req := &Request{Roles: []string{"db-read", "ops"}}
	tests := []struct {
		name  string
		roles []*policy.Role
		want  bool
	}{
		{"wildcard", reviewer("*"), true},
		{"glob covers one only", reviewer("db-*"), false},
		{"two roles cover both", append(reviewer("db-*"), reviewer("ops")...), true},
		{"no roles", nil, false},
		{"nil role", []*policy.Role{nil}, false},
		{"deny wins", append(reviewer("*"), role("d", func(s *policy.RoleSpec) {
			s.Deny.ReviewRequests = &policy.ReviewConditions{Roles: policy.Strings{"ops"}}
		})), false},
	}
	for _, tc := range tests {
		if got := CanReview(tc.roles, req); got != tc.want {
			t.Errorf("%s: CanReview = %v, want %v", tc.name, got, tc.want)
		}
	}
	if CanReview(reviewer("*"), &Request{}) || CanReview(reviewer("*"), nil) {
		t.Error("a request without roles is reviewable")
	}
}
