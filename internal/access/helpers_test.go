package access

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/policy"
)

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func role(name string, f func(s *policy.RoleSpec)) *policy.Role {
	r := &policy.Role{Kind: policy.KindRole, Version: policy.VersionV1, Metadata: policy.Metadata{Name: name}}
	if f != nil {
		f(&r.Spec)
	}
	return r
}

// requester may request db-* and ops, with defaults.
func requester(name string, rc policy.RequestConditions) *policy.Role {
	return role(name, func(s *policy.RoleSpec) { s.Allow.Request = &rc })
}

func reviewer(patterns ...string) []*policy.Role {
	return []*policy.Role{role("reviewer", func(s *policy.RoleSpec) {
		s.Allow.ReviewRequests = &policy.ReviewConditions{Roles: patterns}
	})}
}

func existing(names ...string) func(string) bool {
	return func(n string) bool {
		for _, x := range names {
			if x == n {
				return true
			}
		}
		return false
	}
}

var allExisting = existing("dev", "db-read", "db-admin", "ops", "prod", "admin")

func mustNew(t *testing.T, p CreateParams) *Request {
	t.Helper()
	if p.ExistingRoles == nil {
		p.ExistingRoles = allExisting
	}
	if p.Now.IsZero() {
		p.Now = t0
	}
	r, err := New(p)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// wantErr checks err against kind (nil: no error) and a message fragment.
func wantErr(t *testing.T, err error, kind error, frag string) {
	t.Helper()
	if kind == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want %v error containing %q, got nil", kind, frag)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q is not an *Error", err)
	}
	if !strings.Contains(err.Error(), frag) {
		t.Fatalf("error %q does not contain %q", err, frag)
	}
}
