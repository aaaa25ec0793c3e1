//go:build integration

package sshclient

import (
	"strings"
	"testing"
)

func TestParseLocalForward(t *testing.T) {
	for _, tc := range []struct {
		spec, listen, target, err string
	}{
		{spec: "8080:localhost:80", listen: "127.0.0.1:8080", target: "localhost:80"},
		{spec: "0:db.internal:5432", listen: "127.0.0.1:0", target: "db.internal:5432"},
		{spec: "0.0.0.0:8080:10.0.0.5:80", listen: "0.0.0.0:8080", target: "10.0.0.5:80"},
		{spec: "*:8080:10.0.0.5:80", listen: "0.0.0.0:8080", target: "10.0.0.5:80"},
		{spec: "[::1]:8080:[fd00::5]:80", listen: "[::1]:8080", target: "[fd00::5]:80"},
		{spec: "8080:[fd00::5]:80", listen: "127.0.0.1:8080", target: "[fd00::5]:80"},
		{spec: "8080:localhost", err: "want [BIND_ADDRESS:]PORT:HOST:HOSTPORT"},
		{spec: "a:b:c:d:e", err: "want [BIND_ADDRESS:]PORT:HOST:HOSTPORT"},
		{spec: "", err: "want"},
		{spec: "x:localhost:80", err: "local port"},
		{spec: "70000:localhost:80", err: "local port"},
		{spec: "8080:localhost:0", err: "remote port"},
		{spec: "8080:localhost:http", err: "remote port"},
		{spec: "8080:-oProxyCommand=x:80", err: "forward"},
		{spec: "8080:[fd00::5:80", err: "missing ']'"},
		{spec: "8080:[fd00::5]x:80", err: "after ']'"},
		{spec: strings.Repeat("1", 2000), err: "too long"},
	} {
		f, err := ParseLocalForward(tc.spec)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: got %+v, %v; want an error with %q", tc.spec, f, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.spec, err)
		case tc.err == "" && (f.Listen != tc.listen || f.Target != tc.target):
			t.Errorf("%q: got %+v, want %s -> %s", tc.spec, f, tc.listen, tc.target)
		}
	}
}

// FuzzParseLocalForward: any input either fails or gives addresses that
// net.SplitHostPort accepts, with valid ports.
func FuzzParseLocalForward(f *testing.F) {
	for _, s := range []string{"8080:localhost:80", "[::1]:0:[fd00::5]:80", "*:1:h:2", "::::", "[[]]:1:h:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fw, err := ParseLocalForward(s)
		if err != nil {
			return
		}
		for _, addr := range []string{fw.Listen, fw.Target} {
			host, port, err := splitHostPort(addr)
			if err != nil || validateHost(host) != nil || (port != "0" && func() bool { _, e := parsePort(port); return e != nil }()) {
				t.Fatalf("%q gave %+v: %q does not parse back (%v)", s, fw, addr, err)
			}
		}
	})
}
