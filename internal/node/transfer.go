package node

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/pattern"
	"mvdan.cc/sh/v3/syntax"
)

// A role with file_transfer: false refuses the SFTP subsystem and every
// exec request that would start the server side of a file transfer. Clients
// choose the command they send: `sftp -s 'env /usr/lib/openssh/sftp-server'`,
// `scp -S`, `rsync --rsync-path` put any prefix before the server. So the
// command is parsed as the user's shell would parse it, and the server is
// looked for wherever it appears, not only in the first word.
//
// This is a check of what the command line spells out. It cannot stop a
// user who may run commands from moving data with other programs (cat,
// base64, a copy of sftp-server under another name, a script read from a
// file): docs/configuration.md says so.

// transferServers are programs that serve a file transfer on standard
// input and output, and how their server mode is recognized from the words
// that follow the program name (nil: the name alone).
var transferServers = []struct {
	name   string
	server func(rest []string) bool
}{
	// OpenSSH's SFTP server (any path: /usr/lib/openssh/sftp-server,
	// /usr/libexec/openssh/sftp-server, /usr/lib/sftp-server...).
	{"sftp-server", nil},
	// Legacy scp: -t (to) and -f (from), possibly in a cluster (-pt).
	{"scp", func(rest []string) bool {
		for _, w := range rest {
			if strings.HasPrefix(w, "-") && !strings.HasPrefix(w, "--") && strings.ContainsAny(w, "tf") {
				return true
			}
		}
		return false
	}},
	{"rsync", hasWord("--server")},
	// rclone serve sftp --stdio, rclone serve restic --stdio.
	{"rclone", hasWord("serve")},
	{"borg", hasWord("serve")},
	{"borgbackup", hasWord("serve")},
	{"unison", hasWord("-server")},
}

func hasWord(want string) func([]string) bool {
	return func(rest []string) bool {
		for _, w := range rest {
			if w == want {
				return true
			}
		}
		return false
	}
}

// wrappers run the program named in their arguments (after options of
// their own that are not parsed here): every argument of theirs must be
// spelled out for the check to see what runs.
var wrappers = map[string]bool{
	"env": true, "exec": true, "command": true, "builtin": true, "eval": true, "source": true, ".": true,
	"nice": true, "nohup": true, "setsid": true, "stdbuf": true, "timeout": true, "ionice": true,
	"chrt": true, "taskset": true, "time": true, "xargs": true, "flock": true, "unbuffer": true,
	"sudo": true, "doas": true, "su": true, "runuser": true, "setpriv": true, "chroot": true, "nsenter": true,
	"unshare": true, "busybox": true, "toybox": true, "script": true, "watch": true, "strace": true, "ltrace": true,
	"sh": true, "bash": true, "dash": true, "ash": true, "ksh": true, "mksh": true, "zsh": true, "fish": true,
	"csh": true, "tcsh": true, "rbash": true,
}

// maxTransferDepth bounds how deep strings inside a command (sh -c '...',
// eval, here-documents) are parsed as commands of their own.
const maxTransferDepth = 8

// scriptLike matches words worth parsing as commands: those with a space
// or a shell operator in them.
var scriptLike = regexp.MustCompile(`[\s;&|<>()$` + "`" + `]`)

// fileTransferCommand reports whether an exec command (run as `shell -c
// command`) would start a file transfer server, and why, as what "the
// command ..." does ("runs rsync --server ..."). A command that cannot be
// checked (it does not parse, or it runs a program whose name is computed
// when it runs) counts as one: the check fails closed.
func fileTransferCommand(command string) (why string, found bool) {
	if len(command) > maxTransferCommand {
		return fmt.Sprintf("is too long to check (over %d KiB)", maxTransferCommand>>10), true
	}
	c := &transferCheck{budget: maxTransferWork}
	return c.in(command, 0)
}

// maxTransferCommand bounds the commands checked; a longer one is refused.
const maxTransferCommand = 32 << 10

// maxTransferWork bounds the work of one check (words expanded and bytes
// parsed, brace expansions and nested code included); a command that needs
// more is refused.
const maxTransferWork = 256 << 10

// transferCheck is one check of a command.
type transferCheck struct {
	budget int
}

// spend takes n from the budget and reports whether it lasts.
func (c *transferCheck) spend(n int) bool {
	c.budget -= n
	return c.budget >= 0
}

const msgTooComplex = "is too complex to check"

// in checks one piece of shell code. At depth 0 (the command itself) a
// parse error refuses; deeper, a string that does not parse is not code
// (an argument such as a message) and is skipped.
func (c *transferCheck) in(code string, depth int) (string, bool) {
	if !c.spend(len(code) + 1) {
		return msgTooComplex, true
	}
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(code), "")
	if err != nil {
		if depth == 0 {
			return "cannot be parsed", true
		}
		return "", false
	}
	var what string
	syntax.Walk(f, func(n syntax.Node) bool {
		if what != "" {
			return false
		}
		switch n := n.(type) {
		case *syntax.CallExpr:
			what = c.call(n)
		case *syntax.Word:
			what = c.word(n, depth)
		}
		return what == ""
	})
	return what, what != ""
}

// call checks one simple command: its program (and, after a
// wrapper, every argument) must be spelled out, and no transfer server in
// server mode may appear among its words.
func (c *transferCheck) call(call *syntax.CallExpr) string {
	words := make([]string, 0, len(call.Args))
	// patterns[i] is set for a program word with glob characters
	// (/usr/lib/openssh/sftp-serv*): the names it may match.
	patterns := map[int]*regexp.Regexp{}
	// program[i]: words[i] may be the program that runs (the first word,
	// or any after a wrapper).
	program := map[int]bool{}
	wrapped := false
	for i, w := range call.Args {
		lits, static, ok := c.values(w)
		if !ok {
			return msgTooComplex
		}
		if i == 0 || wrapped {
			for j := range lits {
				program[len(words)+j] = true
			}
			if !static {
				return fmt.Sprintf("runs a program named at run time (%s), which cannot be checked", wordSource(w))
			}
			if len(lits) == 1 {
				re, ok := programPattern(w)
				if !ok {
					return fmt.Sprintf("runs a program whose name cannot be checked (%s)", wordSource(w))
				}
				if re != nil {
					patterns[len(words)] = re
				}
			}
		}
		if i == 0 {
			for _, v := range lits {
				wrapped = wrapped || wrappers[path.Base(v)]
			}
		}
		words = append(words, lits...)
	}
	for i, w := range words {
		if !program[i] {
			continue
		}
		base := path.Base(w)
		for _, ts := range transferServers {
			named := base == ts.name || patterns[i] != nil && patterns[i].MatchString(ts.name)
			if named && (ts.server == nil || ts.server(words[i+1:])) {
				return "runs " + strings.TrimSpace(w+" "+strings.Join(words[i+1:], " "))
			}
		}
	}
	return ""
}

// word checks any word (an argument, an assignment's value, a
// redirection's target, a here-document): it must not name the SFTP
// server, and a word that looks like code (sh -c '...', eval '...') is
// checked as code.
func (c *transferCheck) word(w *syntax.Word, depth int) string {
	lits, _, ok := c.values(w)
	if !ok {
		return msgTooComplex
	}
	for _, v := range lits {
		if strings.Contains(v, "sftp-server") {
			return "names sftp-server"
		}
		if depth < maxTransferDepth && scriptLike.MatchString(v) {
			if what, ok := c.in(v, depth+1); ok {
				return what
			}
		}
	}
	return ""
}

// values returns the values a word stands for after brace expansion and
// quote removal ({a,b} is two values), and whether the word is static: no
// parameter, command or arithmetic expansion in it. The values of a
// non-static word are its literal parts, each on its own
// ("/usr/lib/openssh/" in "/usr/lib/openssh/$x" still counts). ok is false
// when the budget runs out.
func (c *transferCheck) values(w *syntax.Word) (values []string, static, ok bool) {
	static = true
	syntax.Walk(w, func(n syntax.Node) bool {
		switch n.(type) {
		case *syntax.ParamExp, *syntax.CmdSubst, *syntax.ArithmExp, *syntax.ProcSubst, *syntax.ExtGlob:
			static = false
		}
		return static
	})
	if !static {
		syntax.Walk(w, func(n syntax.Node) bool {
			switch n := n.(type) {
			case *syntax.Lit:
				values = append(values, n.Value)
			case *syntax.SglQuoted:
				values = append(values, n.Value)
			case *syntax.ParamExp, *syntax.CmdSubst, *syntax.ArithmExp, *syntax.ProcSubst:
				// Their words are checked on their own.
				return false
			}
			return true
		})
		return values, false, c.spend(len(values))
	}
	for v, err := range expand.FieldsSeq(expandConfig, w) {
		if err != nil || !c.spend(len(v)+1) {
			return nil, true, false
		}
		values = append(values, v)
	}
	return values, true, true
}

// expandConfig expands static words only: quotes, escapes and braces.
// No globbing (no file system), and a tilde stays a tilde (no user
// lookups).
var expandConfig = &expand.Config{Env: tildeEnv{}}

// tildeEnv leaves ~ and ~user as they are written.
type tildeEnv struct{}

func (tildeEnv) Get(name string) expand.Variable {
	if name == "HOME" {
		return expand.Variable{Set: true, Kind: expand.String, Str: "~"}
	}
	if u, ok := strings.CutPrefix(name, "HOME "); ok {
		return expand.Variable{Set: true, Kind: expand.String, Str: "~" + u}
	}
	return expand.Variable{}
}

func (tildeEnv) Each(func(string, expand.Variable) bool) {}

// programPattern returns, for a word with glob characters, a regular
// expression for the program names its last path element matches; nil for
// a plain word, or a pattern with no literal character in its last element
// ("*": it names whatever is there, and so no server in particular).
func programPattern(w *syntax.Word) (*regexp.Regexp, bool) {
	pat, err := expand.Pattern(nil, w)
	if err != nil {
		return nil, false
	}
	if i := strings.LastIndex(pat, "/"); i >= 0 {
		pat = pat[i+1:]
	}
	if !pattern.HasMeta(pat, 0) || strings.Trim(pat, "*?") == "" {
		return nil, true
	}
	expr, err := pattern.Regexp(pat, pattern.EntireString)
	if err != nil {
		return nil, false
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, false
	}
	return re, true
}

// wordSource prints a word as written, shortened.
func wordSource(w *syntax.Word) string {
	var sb strings.Builder
	_ = syntax.NewPrinter().Print(&sb, w)
	s := sb.String()
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}
