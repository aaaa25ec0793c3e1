package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExpandTemplates(t *testing.T) {
	t.Parallel()
	traits := map[string][]string{
		"logins":  {"alice", "bob", "alice", ""},
		"team":    {"payments"},
		"a.b-c_d": {"x"},
	}
	tests := []struct {
		name   string
		values []string
		traits map[string][]string
		want   []string
	}{
		{"nil", nil, traits, nil},
		{"literal", []string{"root", "ubuntu"}, traits, []string{"root", "ubuntu"}},
		{"internal", []string{"{{internal.logins}}"}, traits, []string{"alice", "bob"}},
		{"external same trait", []string{"{{external.logins}}"}, traits, []string{"alice", "bob"}},
		{"spaces inside braces", []string{"{{ internal.team }}"}, traits, []string{"payments"}},
		{"prefix and suffix", []string{"{{internal.logins}}-ops", "adm-{{external.team}}"}, traits, []string{"alice-ops", "bob-ops", "adm-payments"}},
		{"missing trait", []string{"root", "{{internal.nosuch}}"}, traits, []string{"root"}},
		{"nil traits", []string{"{{internal.logins}}", "root"}, nil, []string{"root"}},
		{"dedup stable order", []string{"bob", "{{internal.logins}}", "root", "alice", "bob"}, traits, []string{"bob", "alice", "root"}},
		{"dotted trait name", []string{"{{external.a.b-c_d}}"}, traits, []string{"x"}},
		{"malformed dropped", []string{"{{internal.logins", "{{bad}}", "x}}", "{{internal.a}}{{internal.b}}", "ok"}, traits, []string{"ok"}},
		{"empty literal dropped", []string{"", "a"}, traits, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ExpandTemplates(tt.values, tt.traits)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ExpandTemplates (-want +got):\n%s", diff)
			}
			// valuesContain is the allocation-free twin used by Decide.
			for _, w := range got {
				if !valuesContain(tt.values, tt.traits, w) {
					t.Errorf("valuesContain(%q) = false, but ExpandTemplates produced it", w)
				}
			}
			for _, w := range []string{"", "nobody", "-ops", "adm-"} {
				if valuesContain(tt.values, tt.traits, w) != contains(got, w) {
					t.Errorf("valuesContain(%q) disagrees with ExpandTemplates", w)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
