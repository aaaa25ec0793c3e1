// Package archtest keeps the architecture visible: core packages stay free
// of HTTP, SQL, storage and transport dependencies.
package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/warden-sh/warden"

// core packages hold domain logic only.
var core = []string{"identity", "policy", "ca", "audit", "storage"}

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
