package policy

import (
	"path"
	"slices"
)

// CanJoin reports whether a user holding joinerRoles may join, in mode, a
// live session of a user holding ownerRoles: some allow.join_sessions rule
// of the joiner's roles must name the mode and match one of the owner's
// roles, and no deny.join_sessions rule may match the mode and any of them.
func CanJoin(joinerRoles []*Role, ownerRoles []string, mode string) bool {
	allowed := false
	for _, r := range joinerRoles {
		if r == nil {
			continue
		}
		for _, j := range r.Spec.Deny.JoinSessions {
			if j.matches(ownerRoles, mode) {
				return false
			}
		}
		for _, j := range r.Spec.Allow.JoinSessions {
			if j.matches(ownerRoles, mode) {
				allowed = true
			}
		}
	}
	return allowed
}

func (j JoinSessions) matches(ownerRoles []string, mode string) bool {
	if !slices.Contains(j.Modes, mode) {
		return false
	}
	for _, pattern := range j.Roles {
		for _, role := range ownerRoles {
			if pattern == Wildcard || pattern == role {
				return true
			}
			if ok, err := path.Match(pattern, role); err == nil && ok {
				return true
			}
		}
	}
	return false
}
