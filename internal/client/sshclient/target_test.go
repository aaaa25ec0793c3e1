package sshclient

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCopyArg(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in                string
		login, host, path string
		remote            bool
		wantErr           string
	}{
		{in: "file.txt", path: "file.txt"},
		{in: "./a:b", path: "./a:b"},
		{in: "/tmp/x:y", path: "/tmp/x:y"},
		{in: "dir/sub:file", path: "dir/sub:file"},
		{in: ":weird", path: ":weird"},
		{in: "[::1]", path: "[::1]"},
		{in: "host:", host: "host", remote: true},
		{in: "host:/etc/hosts", host: "host", path: "/etc/hosts", remote: true},
		{in: "alice@node1:docs/a b.txt", login: "alice", host: "node1", path: "docs/a b.txt", remote: true},
		{in: "node1:a:b", host: "node1", path: "a:b", remote: true},
		{in: "user@corp@node1:x", login: "user@corp", host: "node1", path: "x", remote: true},
		{in: "dev@env=prod:/tmp/f", login: "dev", host: "env=prod", path: "/tmp/f", remote: true},
		{in: "env=prod:", host: "env=prod", remote: true},
		{in: "", wantErr: "empty path"},
		{in: "a\x00b", wantErr: "NUL"},
		{in: "@host:x", wantErr: "empty login"},
		{in: "my file:x", wantErr: "write ./my file:x for a local file"},
		{in: "-oProxyCommand=x:y", wantErr: "must not start with '-'"},
		{in: "-x@host:y", wantErr: "must not start with '-'"},
		{in: "dev@env=:x", wantErr: "key=value"},
		{in: "dev@a=b=c:x", wantErr: "key=value"},
		{in: "host:" + strings.Repeat("p", maxPathLen+1), wantErr: "remote path too long"},
		{in: strings.Repeat("p", maxPathLen+1), wantErr: "local path too long"},
	}
	for _, tt := range tests {
		tg, path, remote, err := ParseCopyArg(tt.in)
		login, host := tg.Login, tg.String()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCopyArg(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCopyArg(%q): %v", tt.in, err)
			continue
		}
		if login != tt.login || host != tt.host || path != tt.path || remote != tt.remote {
			t.Errorf("ParseCopyArg(%q) = %q, %q, %q, %v; want %q, %q, %q, %v",
				tt.in, login, host, path, remote, tt.login, tt.host, tt.path, tt.remote)
		}
	}
}

func checkParts(t *testing.T, in, login, host string) {
	t.Helper()
	if len(login)+len(host) > maxTargetLen {
		t.Fatalf("%q: parts exceed bounds: login %d, host %d bytes", in, len(login), len(host))
	}
	if host == "" || strings.HasPrefix(host, "-") || strings.HasPrefix(login, "-") {
		t.Fatalf("%q: accepted host %q, login %q", in, host, login)
	}
	if !utf8.ValidString(login) || strings.ContainsAny(login+host, " \t\r\n\x00/") {
		t.Fatalf("%q: unsafe characters in login %q or host %q", in, login, host)
	}
}

func FuzzParseCopyArg(f *testing.F) {
	for _, s := range []string{"file", "./a:b", "h:", "u@h:p", "u@k=v:p", "k=v:", "[::1]:x", ":x", "a/b:c", "-o:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, path, remote, err := ParseCopyArg(s)
		if err != nil {
			return
		}
		login, host := tg.Login, tg.String()
		if len(path) > maxPathLen {
			t.Fatalf("%q: path of %d bytes accepted", s, len(path))
		}
		if !remote {
			if path != s || login != "" || host != "" {
				t.Fatalf("%q: local arg returned (%q, %q, %q)", s, login, host, path)
			}
			return
		}
		checkParts(t, s, login, host)
		// A remote arg written back in scp form parses the same way.
		spec := host
		if login != "" {
			spec = login + "@" + spec
		}
		t2, p2, r2, err := ParseCopyArg(spec + ":" + path)
		if err != nil || !r2 || t2 != tg || p2 != path {
			t.Fatalf("%q: round trip gave (%+v, %q, %v, %v)", s, t2, p2, r2, err)
		}
	})
}
