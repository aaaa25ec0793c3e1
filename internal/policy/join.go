package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode"
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
	return slices.Contains(j.Modes, mode) &&
		slices.ContainsFunc(ownerRoles, func(r string) bool { return MatchRole(j.Roles, r) })
}

// MatchRole reports whether any pattern matches a role name. Patterns are
// exact names or path.Match globs ("db-*", "*"); malformed globs match
// nothing.
func MatchRole(patterns []string, name string) bool {
	for _, p := range patterns {
		if p == Wildcard || p == name {
			return true
		}
		if strings.ContainsAny(p, "*?[") {
			if ok, err := path.Match(p, name); err == nil && ok {
				return true
			}
		}
	}
	return false
}

// maxNoticeName bounds a user name in a join notice (in runes).
const maxNoticeName = 64

// JoinNotice is the line a live session's owner (and everyone in it)
// sees on the terminal when user joins it in mode, or leaves it: the
// same words for SSH and Kubernetes sessions. The name is made safe for
// a terminal: control characters (C0, DEL, C1: escape sequences) and
// other non-printable runes become '?', and it is cut at 64 runes.
func JoinNotice(user, mode string, joined bool) string {
	name := []rune(strings.ToValidUTF8(user, "?"))
	if len(name) > maxNoticeName {
		name = append(name[:maxNoticeName], '…')
	}
	for i, r := range name {
		if !unicode.IsPrint(r) {
			name[i] = '?'
		}
	}
	if mode != JoinObserver && mode != JoinPeer {
		mode = "?"
	}
	if joined {
		return fmt.Sprintf("\r\nwarden: %s joined this session as %s\r\n", string(name), mode)
	}
	return fmt.Sprintf("\r\nwarden: %s (%s) left this session\r\n", string(name), mode)
}
