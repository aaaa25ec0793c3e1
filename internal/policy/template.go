package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Template namespaces. Both read the user's traits: internal traits are set
// on the local user, external ones come from the identity provider.
const (
	NamespaceInternal = "internal"
	NamespaceExternal = "external"
)

// template is a parsed value of the form prefix{{namespace.name}}suffix.
type template struct {
	prefix, namespace, name, suffix string
}

// errNoTemplate means the value has no braces at all: it is a literal.
var errNoTemplate = errors.New("not a template")

// parseTemplate parses a value containing one {{namespace.name}} template.
// It returns errNoTemplate for literal values (no "{{" or "}}") and a
// descriptive error for malformed ones.
func parseTemplate(v string) (template, error) {
	open := strings.Index(v, "{{")
	closeIdx := strings.Index(v, "}}")
	if open < 0 && closeIdx < 0 {
		return template{}, errNoTemplate
	}
	if open < 0 || closeIdx < open {
		return template{}, fmt.Errorf("template %q: unbalanced braces", v)
	}
	inner := strings.TrimSpace(v[open+2 : closeIdx])
	rest := v[closeIdx+2:]
	if strings.Contains(rest, "{{") || strings.Contains(rest, "}}") || strings.Contains(v[open+2:closeIdx], "{{") {
		return template{}, fmt.Errorf("template %q: only one {{...}} is allowed per value", v)
	}
	ns, name, ok := strings.Cut(inner, ".")
	if !ok {
		return template{}, fmt.Errorf("template %q: want {{internal.NAME}} or {{external.NAME}}", v)
	}
	if ns != NamespaceInternal && ns != NamespaceExternal {
		return template{}, fmt.Errorf("template %q: unknown namespace %q (want internal or external)", v, ns)
	}
	if !validTraitName(name) {
		return template{}, fmt.Errorf("template %q: invalid trait name %q (letters, digits, _ . -)", v, name)
	}
	return template{prefix: v[:open], namespace: ns, name: name, suffix: rest}, nil
}

func validTraitName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ExpandTemplates expands values against a user's traits.
// {{internal.X}} and {{external.X}} both expand to traits["X"], each trait
// value wrapped in the text around the template ("{{internal.logins}}-ops"
// with logins [a b] gives a-ops, b-ops). A missing trait or an empty trait
// value expands to nothing, and so does a malformed template (it is never
// treated as a literal). Values without braces pass through. The result keeps
// first-seen order and has no duplicates or empty strings.
func ExpandTemplates(values []string, traits map[string][]string) []string {
	var out []string
	seen := make(map[string]struct{}, len(values))
	add := func(s string) {
		if s == "" {
			return
		}
		if _, dup := seen[s]; dup {
			return
		}
		seen[s] = struct{}{}
		out = append(out, s)
	}
	for _, v := range values {
		t, err := parseTemplate(v)
		if errors.Is(err, errNoTemplate) {
			add(v)
			continue
		}
		if err != nil {
			continue
		}
		for _, tv := range traits[t.name] {
			if tv != "" {
				add(t.prefix + tv + t.suffix)
			}
		}
	}
	return out
}

// valuesContain reports whether want is among values once expanded, without
// allocating: this is on the hot path of every decision.
func valuesContain(values []string, traits map[string][]string, want string) bool {
	if want == "" {
		return false
	}
	for _, v := range values {
		if !strings.Contains(v, "{{") && !strings.Contains(v, "}}") {
			if v == want {
				return true
			}
			continue
		}
		t, err := parseTemplate(v)
		if err != nil {
			continue
		}
		if len(want) <= len(t.prefix)+len(t.suffix) ||
			!strings.HasPrefix(want, t.prefix) || !strings.HasSuffix(want, t.suffix) {
			continue
		}
		mid := want[len(t.prefix) : len(want)-len(t.suffix)]
		for _, tv := range traits[t.name] {
			if tv == mid {
				return true
			}
		}
	}
	return false
}
