// Package archtest keeps the architecture visible: core packages stay free
// of HTTP, SQL, storage and transport dependencies, and the imports between
// the module's packages are exactly the arrows docs/architecture.md draws.
package archtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/warden-sh/warden"

// core packages hold domain logic only.
var core = []string{"identity", "policy", "access", "lock", "ca", "audit", "asciicast", "recording", "storage", "wire"}

// forbidden imports for core packages (prefix match).
var forbidden = []string{
	"net/http", "database/sql", "net/rpc",
	module + "/internal/storage/", module + "/internal/api", module + "/internal/auth",
	module + "/internal/service", module + "/internal/node", module + "/internal/client",
	module + "/internal/cli", "modernc.org/sqlite", "github.com/jackc/pgx",
}

func TestCorePackagesStayPure(t *testing.T) {
	for _, pkg := range core {
		out, err := exec.Command("go", "list", "-deps", "-json=ImportPath", "./../"+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(out)))
		n := 0
		for dec.More() {
			var p struct{ ImportPath string }
			if err := dec.Decode(&p); err != nil {
				t.Fatal(err)
			}
			n++
			for _, f := range forbidden {
				if p.ImportPath == f || strings.HasPrefix(p.ImportPath, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(p.ImportPath, f)) {
					t.Errorf("core package %s depends on %s", pkg, p.ImportPath)
				}
			}
		}
		if n == 0 {
			t.Fatalf("go list returned no packages for %s", pkg)
		}
	}
}

// TestImportsAreTheDocumentedArrows compares the module's import graph
// (non-test imports between its own packages) with the fenced "imports"
// block of docs/architecture.md, both ways: an import the doc does not draw
// fails, and so does an arrow the code no longer has.
func TestImportsAreTheDocumentedArrows(t *testing.T) {
	doc, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```imports\n")
	if !ok {
		t.Fatal("docs/architecture.md has no ```imports block")
	}
	block, _, _ = strings.Cut(block, "```")
	documented := map[string]bool{}
	for _, line := range strings.Split(block, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		from, tos, ok := strings.Cut(line, "──►")
		if !ok {
			t.Fatalf("imports block: line %q has no arrow", line)
		}
		for _, to := range strings.Split(tos, ",") {
			documented[strings.TrimSpace(from)+" ──► "+strings.TrimSpace(to)] = true
		}
	}
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	short := func(p string) string {
		p = strings.TrimPrefix(p, module+"/")
		return strings.TrimPrefix(p, "internal/")
	}
	actual := map[string]bool{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module+"/") {
				actual[short(p.ImportPath)+" ──► "+short(imp)] = true
			}
		}
	}
	if len(actual) == 0 {
		t.Fatal("go list found no imports between the module's packages")
	}
	for a := range actual {
		if !documented[a] {
			t.Errorf("%s: imported, but docs/architecture.md does not draw it", a)
		}
	}
	for a := range documented {
		if !actual[a] {
			t.Errorf("%s: drawn in docs/architecture.md, but not imported", a)
		}
	}
}
