package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzParseRoles(f *testing.F) {
	f.Add([]byte(devRoleYAML))
	f.Add([]byte("kind: role\nmetadata: {name: a}\n---\nkind: role\nmetadata: {name: b}\n"))
	f.Add([]byte(`{"kind":"role","metadata":{"name":"a"},"spec":{"allow":{"logins":"x","node_labels":{"*":"*"}}}}`))
	f.Add([]byte(`[{"kind":"role","metadata":{"name":"a"}}]`))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("kind: role\nmetadata: {name: a}\nspec: {options: {max_session_ttl: 8h, permit_pty: false}}\n"))
	for _, r := range BuiltinRoles() {
		out, _ := MarshalRole(r, "yaml")
		f.Add(out)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		roles, err := ParseRoles(data)
		if err != nil {
			if len(roles) != 0 {
				t.Fatalf("roles returned with error %v", err)
			}
			return
		}
		for _, r := range roles {
			if err := r.Validate(); err != nil {
				t.Fatalf("ParseRoles returned an invalid role: %v", err)
			}
			// What we parse, we can write and read back unchanged.
			for _, format := range []string{"yaml", "json"} {
				out, err := MarshalRole(r, format)
				if err != nil {
					t.Fatalf("MarshalRole(%s): %v", format, err)
				}
				back, err := ParseRoles(out)
				if err != nil {
					t.Fatalf("reparse %s: %v\n%s", format, err, out)
				}
				if diff := cmp.Diff([]*Role{r}, back, normalize); diff != "" {
					t.Fatalf("%s round trip (-want +got):\n%s", format, diff)
				}
			}
			// Decisions on parsed roles never panic.
			Decide(Request{Roles: []*Role{r}, Identity: Identity{Traits: map[string][]string{"logins": {"a"}}},
				Target: Target{Login: "a", NodeName: "n", Labels: map[string]string{"env": "prod"}}})
			AllowedLogins([]*Role{r}, nil)
			_ = CheckResource([]*Role{r}, ResourceUser, VerbList)
		}
	})
}

// normalize treats nil and empty lists/maps as equal: both mean "not set"
// and the encoders omit them.
var normalize = cmp.Transformer("normalize", func(in Conditions) Conditions {
	if len(in.Logins) == 0 {
		in.Logins = nil
	}
	if len(in.NodeLabels) == 0 {
		in.NodeLabels = nil
	}
	if len(in.Rules) == 0 {
		in.Rules = nil
	}
	return in
})

func FuzzExpandTemplates(f *testing.F) {
	f.Add("{{internal.logins}}", "alice", "logins")
	f.Add("x-{{external.team}}-y", "payments", "team")
	f.Add("{{ internal.a.b }}", "", "a.b")
	f.Add("{{internal.}}}", "v", "")
	f.Add("}}{{", "v", "k")
	f.Add("root", "v", "k")
	f.Fuzz(func(t *testing.T, value, traitValue, traitName string) {
		traits := map[string][]string{traitName: {traitValue, traitValue + "2"}}
		values := []string{value, value, "literal"}
		got := ExpandTemplates(values, traits)
		seen := map[string]bool{}
		for _, v := range got {
			if v == "" {
				t.Fatalf("empty value in %q", got)
			}
			if seen[v] {
				t.Fatalf("duplicate %q in %q", v, got)
			}
			seen[v] = true
			if !valuesContain(values, traits, v) {
				t.Fatalf("valuesContain(%q) = false for an expanded value", v)
			}
		}
		if !seen["literal"] {
			t.Fatalf("literal value lost: %q", got)
		}
		if !strings.Contains(value, "{{") && !strings.Contains(value, "}}") && value != "" && !seen[value] {
			t.Fatalf("literal %q did not pass through: %q", value, got)
		}
		if valuesContain(values, traits, traitValue+"-absent-"+value) != seen[traitValue+"-absent-"+value] {
			t.Fatal("valuesContain disagrees with ExpandTemplates")
		}
	})
}

func FuzzMatchLabels(f *testing.F) {
	f.Add("env", "prod", "env", "prod")
	f.Add("*", "*", "", "")
	f.Add("host", "^web-[0-9]+$", "host", "web-1")
	f.Add("host", "web-[", "host", "web-[")
	f.Add("host", "^(+$", "host", "x")
	f.Add("team", "{{external.team}}", "team", "payments")
	f.Fuzz(func(t *testing.T, key, pattern, nodeKey, nodeValue string) {
		sel := Labels{key: {pattern}}
		node := map[string]string{nodeKey: nodeValue}
		traits := map[string][]string{"team": {nodeValue}}
		got := matchLabels(sel, traits, node)
		if key == Wildcard && pattern == Wildcard && !got {
			t.Fatal("*: * must match every node")
		}
		if pattern == Wildcard && key == nodeKey && !got {
			t.Fatal("value * must match any value of a present key")
		}
		if key != Wildcard && key != nodeKey && got {
			t.Fatalf("matched %q on a node without that key", key)
		}
		if got && key != Wildcard {
			if _, err := parseTemplate(pattern); err == nil {
				// A template matches its expansions exactly.
			} else if !errors.Is(err, errNoTemplate) || compileMatcher(pattern).err != nil {
				t.Fatalf("invalid pattern %q matched", pattern)
			}
		}
		if matchLabels(nil, traits, node) {
			t.Fatal("empty selector matched")
		}
		// The same answer through NodeAllowed and the deny side.
		allow := allowRole("a", nil, sel)
		if NodeAllowed([]*Role{allow}, traits, Target{Labels: node}) != got {
			t.Fatal("NodeAllowed disagrees with matchLabels")
		}
		deny := role("d", func(s *RoleSpec) { s.Deny.NodeLabels = sel })
		if got && NodeAllowed([]*Role{allowRole("all", nil, Labels{"*": {"*"}}), deny}, traits, Target{Labels: node}) {
			t.Fatal("matching deny labels did not deny")
		}
	})
}
