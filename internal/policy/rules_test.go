package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckResource(t *testing.T) {
	t.Parallel()
	rules := func(name string, allow, deny []Rule) *Role {
		return role(name, func(s *RoleSpec) { s.Allow.Rules = allow; s.Deny.Rules = deny })
	}
	editor := rules("editor", []Rule{
		{Resources: Strings{ResourceUser, ResourceRole}, Verbs: Strings{VerbList, VerbRead, VerbUpdate}},
		{Resources: Strings{ResourceLock}, Verbs: Strings{Wildcard}},
	}, nil)
	admin := rules("admin", []Rule{{Resources: Strings{Wildcard}, Verbs: Strings{Wildcard}}}, nil)
	noDelete := rules("no-delete", nil, []Rule{{Resources: Strings{Wildcard}, Verbs: Strings{VerbDelete}}})
	noAudit := rules("no-audit", nil, []Rule{{Resources: Strings{ResourceAudit}, Verbs: Strings{Wildcard}}})

	tests := []struct {
		name     string
		roles    []*Role
		resource string
		verb     string
		allowed  bool
		detail   string
	}{
		{"no roles", nil, ResourceUser, VerbList, false, "no role allows list on user"},
		{"listed verb", []*Role{editor}, ResourceUser, VerbUpdate, true, ""},
		{"unlisted verb", []*Role{editor}, ResourceUser, VerbDelete, false, "no role allows delete on user (roles: editor)"},
		{"unlisted resource", []*Role{editor}, ResourceToken, VerbList, false, ""},
		{"wildcard verb", []*Role{editor}, ResourceLock, VerbDelete, true, ""},
		{"wildcard all", []*Role{admin}, ResourceCluster, VerbCreate, true, ""},
		{"deny wins over wildcard", []*Role{admin, noDelete}, ResourceUser, VerbDelete, false, `role "no-delete": deny.rules[0] denies delete on user`},
		{"deny wins regardless of order", []*Role{noAudit, admin}, ResourceAudit, VerbRead, false, `role "no-audit"`},
		{"deny elsewhere", []*Role{admin, noAudit}, ResourceSession, VerbRead, true, ""},
		{"deny-only role grants nothing", []*Role{noDelete}, ResourceUser, VerbList, false, ""},
		{"nil role skipped", []*Role{nil, editor}, ResourceRole, VerbRead, true, ""},
		{"empty verb", []*Role{admin}, ResourceUser, "", false, "empty"},
		{"empty resource", []*Role{admin}, "", VerbRead, false, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckResource(tt.roles, tt.resource, tt.verb)
			if tt.allowed {
				if err != nil {
					t.Fatalf("CheckResource = %v, want allowed", err)
				}
				return
			}
			var de *DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("CheckResource = %#v, want *DeniedError", err)
			}
			if want := "you are not allowed to " + tt.verb + " " + tt.resource; de.Error() != want {
				t.Errorf("Error() = %q, want %q", de.Error(), want)
			}
			if !strings.Contains(de.Detail, tt.detail) {
				t.Errorf("Detail = %q, want it to contain %q", de.Detail, tt.detail)
			}
		})
	}
}
