package access

import (
	"slices"

	"github.com/warden-sh/warden/internal/policy"
)

// Suggest returns, sorted, the names of roles the user could request that
// would let them log in to target: roles in allRoles that they may request
// (see Requestable) and do not hold, for which policy.Decide with their
// roles plus that one role allows the login. It returns nil if the user's
// current roles already allow the login.
func Suggest(userRoles []*policy.Role, allRoles []*policy.Role, traits map[string][]string, target policy.Target) []string {
	id := policy.Identity{Traits: traits}
	if policy.Decide(policy.Request{Identity: id, Roles: userRoles, Target: target}).Allowed {
		return nil
	}
	held := make(map[string]bool, len(userRoles))
	for _, r := range userRoles {
		if r != nil {
			held[r.Metadata.Name] = true
		}
	}
	var out []string
	roles := make([]*policy.Role, len(userRoles), len(userRoles)+1)
	copy(roles, userRoles)
	for _, cand := range allRoles {
		if cand == nil {
			continue
		}
		name := cand.Metadata.Name
		if held[name] || slices.Contains(out, name) || checkRoleName(name) != nil || !Requestable(userRoles, name) {
			continue
		}
		if policy.Decide(policy.Request{Identity: id, Roles: append(roles, cand), Target: target}).Allowed {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
