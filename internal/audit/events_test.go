package audit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the module's root, two levels up from this package.
const repoRoot = "../.."

// TestTypesAreWellFormed: each name once, a known emitter, distinct codes.
func TestTypesAreWellFormed(t *testing.T) {
	names, codes := map[string]bool{}, map[string]string{}
	for _, ty := range Types() {
		if names[ty.Name] {
			t.Errorf("%s is listed twice", ty.Name)
		}
		names[ty.Name] = true
		if !slices.Contains([]string{ByAuth, ByNode, ByProxy}, ty.Emitter) {
			t.Errorf("%s: unknown emitter %q", ty.Name, ty.Emitter)
		}
		for _, c := range ty.Codes {
			if other, ok := codes[c]; ok {
				t.Errorf("code %s is both %s's and %s's", c, other, ty.Name)
			}
			codes[c] = ty.Name
		}
	}
}

// docEventTypes reads the event table of docs/audit-events.md: each row's
// names (a ".suffix" continues the name before it: `access_request.approved`,
// `.denied`) with the emitter its second column names.
func docEventTypes(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "audit-events.md"))
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]+)`")
	out := map[string]string{}
	inTable := false
	for line := range strings.Lines(string(doc)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "| event | emitted by |") {
			inTable = true
			continue
		}
		if !inTable || strings.HasPrefix(line, "|---") {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break // the end of the table
		}
		cols := strings.Split(line, "|")
		if len(cols) < 4 {
			t.Fatalf("docs/audit-events.md: row %q has no emitter column", line)
		}
		emitter, _, _ := strings.Cut(strings.TrimSpace(cols[2]), " ")
		prefix := ""
		for _, m := range code.FindAllStringSubmatch(cols[1], -1) {
			name := m[1]
			if strings.HasPrefix(name, ".") {
				name = prefix + name
			} else if i := strings.Index(name, "."); i > 0 {
				prefix = name[:i]
			}
			if _, dup := out[name]; dup {
				t.Errorf("docs/audit-events.md lists %s twice", name)
			}
			out[name] = emitter
		}
	}
	if len(out) == 0 {
		t.Fatal("docs/audit-events.md: no event table found")
	}
	return out
}

// TestDocsListEveryEventType: docs/audit-events.md lists exactly the event
// types of Types, no more, no less, each with its emitter.
func TestDocsListEveryEventType(t *testing.T) {
	doc := docEventTypes(t)
	for _, ty := range Types() {
		emitter, ok := doc[ty.Name]
		switch {
		case !ok:
			t.Errorf("docs/audit-events.md does not list %s (emitted by %s)", ty.Name, ty.Emitter)
		case emitter != ty.Emitter:
			t.Errorf("docs/audit-events.md says %s is emitted by %q, audit.Types says %q", ty.Name, emitter, ty.Emitter)
		}
		delete(doc, ty.Name)
	}
	for name := range doc {
		t.Errorf("docs/audit-events.md lists %s, which is not in audit.Types", name)
	}
}

// TestNoEventNamesElsewhere: outside this package, Go code names events by
// these constants, never by a string of its own (tests aside), so the list
// here is all there is. Names without a dot ("exec", "sftp") are also SSH
// words and are not looked for.
func TestNoEventNamesElsewhere(t *testing.T) {
	names := map[string]bool{}
	for _, ty := range Types() {
		if strings.Contains(ty.Name, ".") {
			names[ty.Name] = true
		}
	}
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			abs, _ := filepath.Abs(path)
			if abs == self || d.Name() == "node_modules" || d.Name() == "testdata" || (strings.HasPrefix(d.Name(), ".") && path != repoRoot) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && names[s] {
					t.Errorf("%s: the event name %q spelled out; use its constant in internal/audit", fset.Position(lit.Pos()), s)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
