package sshclient

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in          string
		login, host string
		port        int
		wantErr     string // substring; "" means success
	}{
		{in: "host", host: "host"},
		{in: "alice@node1", login: "alice", host: "node1"},
		{in: "alice@node1.example.com:2222", login: "alice", host: "node1.example.com", port: 2222},
		{in: "node_1:22", host: "node_1", port: 22},
		{in: "10.0.0.1:65535", host: "10.0.0.1", port: 65535},
		{in: "[::1]:2222", host: "::1", port: 2222},
		{in: "root@[fe80::1]", login: "root", host: "fe80::1"},
		{in: "::1", host: "::1"},
		{in: "user@corp@host", login: "user@corp", host: "host"},
		{in: `DOMAIN\bob@host`, login: `DOMAIN\bob`, host: "host"},
		{in: "", wantErr: "empty target"},
		{in: "@host", wantErr: "empty login"},
		{in: "alice@", wantErr: "empty host"},
		{in: "host:", wantErr: "invalid port"},
		{in: "host:0", wantErr: "out of range"},
		{in: "host:65536", wantErr: "out of range"},
		{in: "host:+22", wantErr: "invalid port"},
		{in: "host:222222", wantErr: "invalid port"},
		{in: "host:22:33", wantErr: "too many ':'"},
		{in: "-oProxyCommand=x", wantErr: "must not start with '-'"},
		{in: "-x@host", wantErr: "must not start with '-'"},
		{in: "a b@host", wantErr: "contains"},
		{in: "alice@ho st", wantErr: "contains characters"},
		{in: "alice@host\n", wantErr: "contains characters"},
		{in: "a\x1b@host", wantErr: "contains"},
		{in: "[::1", wantErr: "missing ']'"},
		{in: "[1.2.3.4]:22", wantErr: "not an IPv6 address"},
		{in: "[::1]x", wantErr: "unexpected"},
		{in: "a..b", wantErr: "empty label"},
		{in: ".host", wantErr: "must not start"},
		{in: strings.Repeat("a", 254), wantErr: "host name too long"},
		{in: strings.Repeat("a", 257) + "@h", wantErr: "login too long"},
		{in: strings.Repeat("a", maxTargetLen+1), wantErr: "target too long"},
	}
	for _, tt := range tests {
		login, host, port, err := ParseTarget(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseTarget(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", tt.in, err)
			continue
		}
		if login != tt.login || host != tt.host || port != tt.port {
			t.Errorf("ParseTarget(%q) = %q, %q, %d; want %q, %q, %d", tt.in, login, host, port, tt.login, tt.host, tt.port)
		}
	}
}

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
		{in: "[::1]:/tmp/f", host: "::1", path: "/tmp/f", remote: true},
		{in: "bob@[2001:db8::1]:x", login: "bob", host: "2001:db8::1", path: "x", remote: true},
		{in: "", wantErr: "empty path"},
		{in: "a\x00b", wantErr: "NUL"},
		{in: "@host:x", wantErr: "empty login"},
		{in: "my file:x", wantErr: "write ./my file:x for a local file"},
		{in: "-oProxyCommand=x:y", wantErr: "must not start with '-'"},
		{in: "[1.2.3.4]:x", wantErr: "not an IPv6 address"},
		{in: "host:" + strings.Repeat("p", maxPathLen+1), wantErr: "remote path too long"},
		{in: strings.Repeat("p", maxPathLen+1), wantErr: "local path too long"},
	}
	for _, tt := range tests {
		login, host, path, remote, err := ParseCopyArg(tt.in)
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

// formatTarget writes a parsed target back in the form ParseTarget reads.
func formatTarget(login, host string, port int) string {
	s := host
	if port != 0 {
		s = net.JoinHostPort(host, strconv.Itoa(port))
	} else if strings.Contains(host, ":") {
		s = "[" + host + "]"
	}
	if login != "" {
		s = login + "@" + s
	}
	return s
}

func checkParts(t *testing.T, in, login, host string) {
	t.Helper()
	if len(login) > maxLoginLen || len(host) > maxHostLen {
		t.Fatalf("%q: parts exceed bounds: login %d, host %d bytes", in, len(login), len(host))
	}
	if host == "" || strings.HasPrefix(host, "-") || strings.HasPrefix(login, "-") {
		t.Fatalf("%q: accepted host %q, login %q", in, host, login)
	}
	if !utf8.ValidString(login) || strings.ContainsAny(login+host, " \t\r\n\x00/") {
		t.Fatalf("%q: unsafe characters in login %q or host %q", in, login, host)
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"host", "a@b:22", "[::1]:2222", "::1", "u@corp@h", "-x", "h:0", "[fe80::1%eth0]:22", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		login, host, port, err := ParseTarget(s)
		if err != nil {
			return
		}
		checkParts(t, s, login, host)
		if port < 0 || port > 65535 {
			t.Fatalf("%q: port %d", s, port)
		}
		// What was accepted must read back the same.
		again := formatTarget(login, host, port)
		l2, h2, p2, err := ParseTarget(again)
		if err != nil || l2 != login || h2 != host || p2 != port {
			t.Fatalf("%q -> %q -> (%q, %q, %d, %v); want (%q, %q, %d)", s, again, l2, h2, p2, err, login, host, port)
		}
	})
}

func FuzzParseCopyArg(f *testing.F) {
	for _, s := range []string{"file", "./a:b", "h:", "u@h:p", "[::1]:x", "u@[::1]:x", ":x", "a/b:c", "-o:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		login, host, path, remote, err := ParseCopyArg(s)
		if err != nil {
			return
		}
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
		if strings.Contains(host, ":") {
			spec = "[" + host + "]"
		}
		if login != "" {
			spec = login + "@" + spec
		}
		l2, h2, p2, r2, err := ParseCopyArg(spec + ":" + path)
		if err != nil || !r2 || l2 != login || h2 != host || p2 != path {
			t.Fatalf("%q: round trip gave (%q, %q, %q, %v, %v)", s, l2, h2, p2, r2, err)
		}
	})
}
