package policy

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := func(mutate func(r *Role)) *Role {
		r := devRole()
		if mutate != nil {
			mutate(r)
		}
		return r
	}
	tests := []struct {
		name string
		role *Role
		want string // "" means valid; otherwise a substring of the error
	}{
		{"valid", ok(nil), ""},
		{"empty version is v1", ok(func(r *Role) { r.Version = "" }), ""},
		{"nil role", nil, "role is nil"},
		{"wrong kind", ok(func(r *Role) { r.Kind = "user" }), `kind: must be "role"`},
		{"wrong version", ok(func(r *Role) { r.Version = "v2" }), `version: unsupported version "v2"`},
		{"empty name", ok(func(r *Role) { r.Metadata.Name = "" }), "metadata.name:"},
		{"name with space", ok(func(r *Role) { r.Metadata.Name = "a b" }), "metadata.name:"},
		{"name leading dot", ok(func(r *Role) { r.Metadata.Name = ".a" }), "metadata.name:"},
		{"name 64 chars", ok(func(r *Role) { r.Metadata.Name = strings.Repeat("a", 64) }), ""},
		{"name 65 chars", ok(func(r *Role) { r.Metadata.Name = strings.Repeat("a", 65) }), "metadata.name:"},
		{"negative ttl", ok(func(r *Role) { r.Spec.Options.MaxSessionTTL = Duration(-time.Second) }), "spec.options.max_session_ttl: must not be negative"},
		{"ttl at limit", ok(func(r *Role) { r.Spec.Options.MaxSessionTTL = Duration(30 * time.Hour) }), ""},
		{"ttl over limit", ok(func(r *Role) { r.Spec.Options.MaxSessionTTL = Duration(31 * time.Hour) }), "spec.options.max_session_ttl: 31h0m0s is longer"},
		{"bad regex", ok(func(r *Role) { r.Spec.Allow.NodeLabels["host"] = Strings{"^web-(+$"} }), `spec.allow.node_labels["host"]: invalid regex`},
		{"bad glob", ok(func(r *Role) { r.Spec.Deny.NodeLabels = Labels{"env": {"pr[od"}} }), `spec.deny.node_labels["env"]: invalid glob`},
		{"empty label values", ok(func(r *Role) { r.Spec.Allow.NodeLabels["env"] = nil }), `node_labels["env"]: no values`},
		{"empty label value", ok(func(r *Role) { r.Spec.Allow.NodeLabels["env"] = Strings{""} }), `node_labels["env"]: empty value`},
		{"empty label key", ok(func(r *Role) { r.Spec.Allow.NodeLabels[""] = Strings{"x"} }), "empty label key"},
		{"wildcard key with value", ok(func(r *Role) { r.Spec.Allow.NodeLabels["*"] = Strings{"prod"} }), `wildcard key "*"`},
		{"label template ok", ok(func(r *Role) { r.Spec.Allow.NodeLabels["env"] = Strings{"{{external.env}}"} }), ""},
		{"label template bad", ok(func(r *Role) { r.Spec.Allow.NodeLabels["env"] = Strings{"{{env}}"} }), `node_labels["env"]: template "{{env}}"`},
		{"template with spaces and affixes", ok(func(r *Role) { r.Spec.Allow.Logins = []string{"x-{{ internal.logins }}-ops"} }), ""},
		{"template unknown namespace", ok(func(r *Role) { r.Spec.Allow.Logins = []string{"{{email.local}}"} }), `spec.allow.logins[0]: template "{{email.local}}": unknown namespace "email"`},
		{"template unclosed", ok(func(r *Role) { r.Spec.Deny.Logins = []string{"root", "{{internal.logins"} }), "spec.deny.logins[1]: template \"{{internal.logins\": unbalanced braces"},
		{"template stray close", ok(func(r *Role) { r.Spec.Allow.Logins = []string{"a}}"} }), "unbalanced braces"},
		{"two templates", ok(func(r *Role) { r.Spec.Allow.Logins = []string{"{{internal.a}}{{internal.b}}"} }), "only one"},
		{"bad trait name", ok(func(r *Role) { r.Spec.Allow.Logins = []string{"{{internal.a b}}"} }), "invalid trait name"},
		{"empty login", ok(func(r *Role) { r.Spec.Allow.Logins = []string{""} }), "spec.allow.logins[0]: empty login"},
		{"login with space", ok(func(r *Role) { r.Spec.Allow.Logins = []string{"a b"} }), "spec.allow.logins[0]: login \"a b\" contains whitespace"},
		{"login with comma", ok(func(r *Role) { r.Spec.Allow.Logins = []string{"a,b"} }), "comma"},
		{"rule unknown resource", ok(func(r *Role) { r.Spec.Allow.Rules = []Rule{{Resources: Strings{"users"}, Verbs: Strings{"list"}}} }), `spec.allow.rules[0].resources: unknown resource "users"`},
		{"rule unknown verb", ok(func(r *Role) { r.Spec.Deny.Rules = []Rule{{Resources: Strings{"*"}, Verbs: Strings{"write"}}} }), `spec.deny.rules[0].verbs: unknown verb "write"`},
		{"rule without verbs", ok(func(r *Role) { r.Spec.Allow.Rules = []Rule{{Resources: Strings{"user"}}} }), "rules[0].verbs: at least one"},
		{"rule without resources", ok(func(r *Role) { r.Spec.Allow.Rules = []Rule{{Verbs: Strings{"*"}}} }), "rules[0].resources: at least one"},
		{"error names role", ok(func(r *Role) { r.Kind = "" }), `role "dev": kind`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.role.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestValidateDoesNotModify(t *testing.T) {
	t.Parallel()
	r := devRole()
	r.Version = ""
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.Version != "" {
		t.Errorf("Validate set Version to %q", r.Version)
	}
}
