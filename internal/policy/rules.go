package policy

import "fmt"

// CheckResource returns nil if the roles allow verb on resource, and a
// *DeniedError otherwise. A matching deny rule in any role wins over every
// allow rule.
func CheckResource(roles []*Role, resource, verb string) error {
	reason := fmt.Sprintf("you are not allowed to %s %s", verb, resource)
	if resource == "" || verb == "" {
		return &DeniedError{Reason: reason, Detail: "empty resource or verb"}
	}
	for _, r := range roles {
		if r == nil {
			continue
		}
		if i := matchRules(r.Spec.Deny.Rules, resource, verb); i >= 0 {
			return &DeniedError{
				Reason: reason,
				Detail: fmt.Sprintf("role %q: deny.rules[%d] denies %s on %s", r.Metadata.Name, i, verb, resource),
			}
		}
	}
	for _, r := range roles {
		if r == nil {
			continue
		}
		if matchRules(r.Spec.Allow.Rules, resource, verb) >= 0 {
			return nil
		}
	}
	return &DeniedError{
		Reason: reason,
		Detail: fmt.Sprintf("no role allows %s on %s (roles: %s)", verb, resource, roleNames(roles)),
	}
}

// matchRules returns the index of the first rule covering resource and verb,
// or -1.
func matchRules(rules []Rule, resource, verb string) int {
	for i, rule := range rules {
		if matchWord(rule.Resources, resource) && matchWord(rule.Verbs, verb) {
			return i
		}
	}
	return -1
}

func matchWord(list []string, w string) bool {
	for _, v := range list {
		if v == w || v == Wildcard {
			return true
		}
	}
	return false
}
