package auth

import (
	"regexp"
	"strings"
	"testing"
)

// FuzzMatchGlob checks matchGlob (the globs of OIDC join rules) against a
// regular expression with the same meaning: * any run, ? any one byte.
func FuzzMatchGlob(f *testing.F) {
	for _, s := range [][2]string{{"refs/heads/*", "refs/heads/main"}, {"acme/*", "acme/app"}, {"a*b*c", "aXbYc"},
		{"?", ""}, {"**", "x"}, {"repo:acme/*:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main"}, {"*a", "ba"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 64 || len(s) > 64 || !ascii(pattern) || !ascii(s) {
			return
		}
		var re strings.Builder
		re.WriteString(`^(?s)`)
		for _, c := range pattern {
			switch c {
			case '*':
				re.WriteString(`.*`)
			case '?':
				re.WriteString(`.`)
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString(`$`)
		want := regexp.MustCompile(re.String()).MatchString(s)
		if got := matchGlob(pattern, s); got != want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", pattern, s, got, want)
		}
	})
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
