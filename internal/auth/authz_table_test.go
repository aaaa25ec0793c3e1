package auth

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/policy"
)

// TestOperationsTable: every exported method of Server that takes a Caller
// has its rule in operations, and its first statement consults that rule,
// by the method's own name (authorizeShare exactly when the rule has a
// share). A method added without an entry, or that checks its caller some
// other way first, fails here.
func TestOperationsTable(t *testing.T) {
	callerType := reflect.TypeFor[Caller]()
	methods := map[string]bool{}
	st := reflect.TypeFor[*Server]()
	for i := range st.NumMethod() {
		m := st.Method(i)
		for j := range m.Type.NumIn() {
			if m.Type.In(j) == callerType {
				methods[m.Name] = true
			}
		}
	}
	for m := range methods {
		if _, ok := operations[m]; !ok {
			t.Errorf("Server.%s takes a Caller but has no rule in operations (authz.go)", m)
		}
	}
	for op, r := range operations {
		if !methods[op] {
			t.Errorf("operations has a rule for %s, which is no exported method of Server taking a Caller", op)
		}
		for _, p := range r.perms {
			if !slices.Contains(policy.Resources(), p.resource) || !slices.Contains(policy.Verbs(), p.verb) {
				t.Errorf("%s: %q is not a resource and verb of role rules", op, p.resource+" "+p.verb)
			}
		}
		switch {
		case r.via != "":
			if v, ok := operations[r.via]; !ok || v.via != "" {
				t.Errorf("%s: checked via %q, which has no rule of its own", op, r.via)
			}
			if len(r.kinds)+len(r.perms)+len(r.own) > 0 {
				t.Errorf("%s: a rule checked via another grants nothing itself", op)
			}
		case len(r.kinds)+len(r.perms)+len(r.own) == 0:
			t.Errorf("%s: the rule lets no caller in", op)
		case len(r.own) > 0 && r.share == "":
			t.Errorf("%s: the rule has own kinds but does not say what their share is", op)
		case r.does == "" && len(r.perms) == 0:
			t.Errorf("%s: the rule does not say what the operation does (for refusals)", op)
		}
	}

	// The first statement of each method.
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || !methods[fn.Name.Name] {
				continue
			}
			op := fn.Name.Name
			seen[op] = true
			r := operations[op]
			if r.via != "" {
				continue
			}
			want := "authorize"
			if len(r.own) > 0 {
				want = "authorizeShare"
			}
			if got := firstCheck(fn); got != want+"("+strconv.Quote(op)+")" {
				t.Errorf("%s: %s: the first statement must call s.%s(c, %q); it calls %s", fset.Position(fn.Pos()), op, want, op, got)
			}
		}
	}
	for m := range methods {
		if !seen[m] {
			t.Errorf("Server.%s: not found in the package's files", m)
		}
	}
}

// firstCheck describes the authorization call in fn's first statement, as
// name("op"), or "nothing".
func firstCheck(fn *ast.FuncDecl) string {
	if fn.Body == nil || len(fn.Body.List) == 0 {
		return "nothing"
	}
	got := "nothing"
	ast.Inspect(fn.Body.List[0], func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || got != "nothing" {
			return got == "nothing"
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "authorize" && sel.Sel.Name != "authorizeShare") || len(call.Args) != 2 {
			return true
		}
		if recv, ok := sel.X.(*ast.Ident); !ok || recv.Name != "s" {
			return true
		}
		lit, ok := call.Args[1].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			got = sel.Sel.Name + "(not a literal)"
			return false
		}
		got = sel.Sel.Name + "(" + lit.Value + ")"
		return false
	})
	return got
}

// TestAuthorizeFailsClosed: an operation missing from the table, a rule
// checked via another, an unknown kind of caller, and a share the method
// does not narrow to are all refused.
func TestAuthorizeFailsClosed(t *testing.T) {
	s := &Server{roles: &roleCache{}}
	admin := AdminCaller()
	if err := s.authorize(admin, "NoSuchOperation"); err == nil {
		t.Error("an operation missing from the table was allowed")
	}
	if err := s.authorize(admin, "Emitter"); err == nil {
		t.Error("a rule checked via another operation was allowed by itself")
	}
	if err := s.authorize(Caller{Kind: "robot"}, "CurrentCaller"); err == nil {
		t.Error("an unknown kind of caller was allowed")
	}
	if err := s.authorize(Caller{Kind: KindUser, User: "u"}, "ListNodes"); err == nil {
		t.Error("authorize allowed a share without the method narrowing to it")
	}
	if all, err := s.authorizeShare(Caller{Kind: KindUser, User: "u"}, "ListNodes"); err != nil || all {
		t.Errorf("a user's share of ListNodes: all %v, err %v", all, err)
	}
}
