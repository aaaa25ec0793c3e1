package auth_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

func TestMapClaims(t *testing.T) {
	spec := wire.OIDCConnectorSpec{
		ClaimsToRoles: []wire.ClaimMapping{
			{Claim: "groups", Value: "ops-*", Roles: []string{"ops"}},
			{Claim: "email", Value: `^[a-z]+@example\.com$`, Roles: []string{"access", "ops"}},
			{Claim: "level", Value: "3", Roles: []string{"senior"}},
		},
		Traits: map[string]string{"logins": "unix", "teams": "groups"},
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		roles  []string
		traits map[string][]string
	}{
		{"list claim, glob", map[string]any{"groups": []any{"staff", "ops-eu"}}, []string{"ops"}, map[string][]string{"teams": {"staff", "ops-eu"}}},
		{"regexp anchored", map[string]any{"email": "ann@example.com"}, []string{"access", "ops"}, nil},
		{"regexp no partial match", map[string]any{"email": "ann@example.com.evil.io"}, nil, nil},
		{"glob is whole value", map[string]any{"groups": "xops-eu"}, nil, map[string][]string{"teams": {"xops-eu"}}},
		{"number claim", map[string]any{"level": float64(3), "unix": "ann"}, []string{"senior"}, map[string][]string{"logins": {"ann"}}},
		{"none", map[string]any{"groups": []any{"sales"}, "level": 2.0}, nil, map[string][]string{"teams": {"sales"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roles, traits := auth.MapClaims(spec, tc.claims)
			if diff := cmp.Diff(tc.roles, roles); diff != "" {
				t.Errorf("roles (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.traits, traits); diff != "" {
				t.Errorf("traits (-want +got):\n%s", diff)
			}
		})
	}
}
