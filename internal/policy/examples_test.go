package policy

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDocExamples: every role file under docs/examples parses strictly,
// and the roles it lets users request exist in the same file (the README
// applies them as they are).
func TestDocExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		roles, err := ParseRoles(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		names := map[string]bool{}
		for _, r := range roles {
			names[r.Metadata.Name] = true
		}
		for _, r := range roles {
			if rc := r.Spec.Allow.Request; rc != nil {
				for _, want := range rc.Roles {
					if !names[want] {
						t.Errorf("%s: role %s may request %q, which the file does not define", f, r.Metadata.Name, want)
					}
				}
			}
		}
	}
}
