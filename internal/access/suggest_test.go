package access

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/warden-sh/warden/internal/policy"
)

func TestSuggest(t *testing.T) {
	allNodes := policy.Labels{"*": {"*"}}
	prodLabels := policy.Labels{"env": {"prod"}}
	roles := map[string]*policy.Role{
		"base": role("base", func(s *policy.RoleSpec) {
			s.Allow.Logins = policy.Strings{"dev"}
			s.Allow.NodeLabels = policy.Labels{"env": {"staging"}}
			s.Allow.Request = &policy.RequestConditions{Roles: policy.Strings{"prod-*", "root-all", "other"}}
			s.Deny.Request = &policy.RequestConditions{Roles: policy.Strings{"prod-secret"}}
		}),
		"prod-ro": role("prod-ro", func(s *policy.RoleSpec) {
			s.Allow.Logins = policy.Strings{"{{internal.logins}}"}
			s.Allow.NodeLabels = prodLabels
		}),
		"prod-admin": role("prod-admin", func(s *policy.RoleSpec) {
			s.Allow.Logins = policy.Strings{"root", "dev"}
			s.Allow.NodeLabels = prodLabels
		}),
		"prod-secret": role("prod-secret", func(s *policy.RoleSpec) { s.Allow.Logins = policy.Strings{"dev"}; s.Allow.NodeLabels = allNodes }),
		"prod-web": role("prod-web", func(s *policy.RoleSpec) {
			s.Allow.Logins = policy.Strings{"dev"}
			s.Allow.NodeLabels = policy.Labels{"env": {"web"}}
		}),
		"root-all": role("root-all", func(s *policy.RoleSpec) { s.Allow.Logins = policy.Strings{"root"}; s.Allow.NodeLabels = allNodes }),
		"unrequestable": role("unrequestable", func(s *policy.RoleSpec) {
			s.Allow.Logins = policy.Strings{"dev", "root"}
			s.Allow.NodeLabels = allNodes
		}),
		"other": role("other", func(s *policy.RoleSpec) {
			s.Allow.Logins = policy.Strings{"dev", "root"}
			s.Allow.NodeLabels = allNodes
			s.Deny.Logins = policy.Strings{"root"}
		}),
	}
	var all []*policy.Role
	for _, n := range []string{"base", "prod-ro", "prod-admin", "prod-secret", "prod-web", "root-all", "unrequestable", "other"} {
		all = append(all, roles[n])
	}
	prod := policy.Target{NodeName: "db1", Labels: map[string]string{"env": "prod"}}
	staging := policy.Target{NodeName: "st1", Labels: map[string]string{"env": "staging"}}
	traits := map[string][]string{"logins": {"dev"}}
	with := func(tg policy.Target, login string) policy.Target { tg.Login = login; return tg }
	tests := []struct {
		name   string
		user   []*policy.Role
		target policy.Target
		want   []string
	}{
		{"dev on prod", []*policy.Role{roles["base"]}, with(prod, "dev"), []string{"other", "prod-admin", "prod-ro"}},
		{"root on prod: deny.logins in candidate excludes other", []*policy.Role{roles["base"]}, with(prod, "root"), []string{"prod-admin", "root-all"}},
		{"already allowed", []*policy.Role{roles["base"]}, with(staging, "dev"), nil},
		{"holding one candidate still suggests the others", []*policy.Role{roles["base"], roles["prod-ro"]}, with(prod, "root"), []string{"prod-admin", "root-all"}},
		{"no request rights", []*policy.Role{roles["prod-web"]}, with(prod, "dev"), nil},
		{"unknown login", []*policy.Role{roles["base"]}, with(prod, "nobody"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Suggest(tc.user, all, traits, tc.target)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Suggest (-want +got):\n%s", diff)
			}
		})
	}
}
