package policy

import "testing"

func TestMatchValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"prod", "prod", true},
		{"prod", "production", false},
		{"*", "", true},
		{"*", "anything", true},
		{"prod*", "production", true},
		{"prod*", "staging", false},
		{"us-?", "us-1", true},
		{"us-?", "us-12", false},
		{"[ab]x", "bx", true},
		{"a*", "a/b", false}, // path.Match: * does not cross "/"
		{"^a.*$", "a/b", true},
		{"^(dev|staging)$", "staging", true},
		{"^(dev|staging)$", "prod", false},
		{"^dev$", "dev\n", false},
		{"^$", "", true},
		{"^", "^", true},     // too short to be a regex: exact
		{"a$", "a$", true},   // not wrapped in ^...$: exact
		{"^(+$", "x", false}, // invalid regex never matches
		{"[", "[", false},    // invalid glob never matches
	}
	for _, tt := range tests {
		if got := matchValue(tt.pattern, nil, tt.value); got != tt.want {
			t.Errorf("matchValue(%q, %q) = %v, want %v", tt.pattern, tt.value, got, tt.want)
		}
	}
}

func TestMatcherCacheBounded(t *testing.T) {
	t.Parallel()
	c := &matcherCache{max: 3}
	for _, p := range []string{"a*", "b*", "c*", "d*", "e*", "a*"} {
		if !c.get(p).match(p[:1] + "x") {
			t.Errorf("cached matcher %q failed", p)
		}
	}
	if n := c.size.Load(); n > 3 {
		t.Errorf("cache size %d above bound", n)
	}
	if first := c.get("a*"); c.get("a*") != first {
		t.Error("matcher not cached")
	}
}
