package node

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/patience"
)

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"TERM", "xterm-256color", true},
		{"LANG", "en_US.UTF-8", true},
		{"LC_ALL", "C", true},
		{"LC_", "C", true},
		{"LD_PRELOAD", "/tmp/x.so", false},
		{"PATH", "/tmp", false},
		{"WARDEN_NODE_CHILD", "sftp", false},
		{"", "x", false},
		{"LC_BAD-NAME", "x", false},
		{"1LC", "x", false},
		{"LANG", "a\x00b", false},
		{"LANG", strings.Repeat("x", maxEnvValueLen+1), false},
		{"LC_" + strings.Repeat("A", maxEnvNameLen), "x", false},
	}
	for _, tc := range tests {
		_, err := parseEnv(ssh.Marshal(envRequest{Name: tc.name, Value: tc.value}))
		if (err == nil) != tc.ok {
			t.Errorf("parseEnv(%q=%.20q) err=%v, want ok=%v", tc.name, tc.value, err, tc.ok)
		}
	}
	if _, err := parseEnv([]byte{0, 0, 0}); err == nil {
		t.Error("parseEnv accepted a truncated payload")
	}
}

func TestParsePtyRequest(t *testing.T) {
	tests := []struct {
		name string
		req  ptyRequest
		ok   bool
		want ptyRequest
	}{
		{"normal", ptyRequest{Term: "xterm", Columns: 80, Rows: 24}, true, ptyRequest{Term: "xterm", Columns: 80, Rows: 24}},
		{"clamped", ptyRequest{Term: "vt100", Columns: 1 << 30, Rows: 1 << 20, WidthPx: 1 << 20}, true,
			ptyRequest{Term: "vt100", Columns: maxWindowDim, Rows: maxWindowDim, WidthPx: 0xffff}},
		{"term with space", ptyRequest{Term: "xterm; rm"}, false, ptyRequest{}},
		{"term too long", ptyRequest{Term: strings.Repeat("x", maxTermLen+1)}, false, ptyRequest{}},
		{"modes too long", ptyRequest{Term: "x", Modes: strings.Repeat("\x01", maxTermModesLen+1)}, false, ptyRequest{}},
	}
	for _, tc := range tests {
		got, err := parsePtyRequest(ssh.Marshal(tc.req))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err=%v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if tc.ok && got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestParseSignalAndName(t *testing.T) {
	for name, sig := range signals {
		got, err := parseSignal(ssh.Marshal(signalRequest{Signal: name}))
		if err != nil || got != sig {
			t.Errorf("parseSignal(%s) = %v, %v", name, got, err)
		}
		if signalName(sig) != name {
			t.Errorf("signalName(%v) = %s, want %s", sig, signalName(sig), name)
		}
	}
	if got, err := parseSignal(ssh.Marshal(signalRequest{Signal: "SIGTERM"})); err != nil || got != syscall.SIGTERM {
		t.Errorf("SIGTERM prefix: %v %v", got, err)
	}
	if _, err := parseSignal(ssh.Marshal(signalRequest{Signal: "STOP"})); err == nil {
		t.Error("STOP accepted")
	}
}

func TestParseDirectTCPIPAndForward(t *testing.T) {
	tests := []struct {
		d  directTCPIP
		ok bool
	}{
		{directTCPIP{Host: "127.0.0.1", Port: 22}, true},
		{directTCPIP{Host: "db.internal", Port: 5432, OriginHost: "10.0.0.1", OriginPort: 5555}, true},
		{directTCPIP{Host: "", Port: 22}, false},
		{directTCPIP{Host: "h", Port: 0}, false},
		{directTCPIP{Host: "h", Port: 70000}, false},
		{directTCPIP{Host: "h\nx", Port: 1}, false},
	}
	for _, tc := range tests {
		if _, err := parseDirectTCPIP(ssh.Marshal(tc.d)); (err == nil) != tc.ok {
			t.Errorf("parseDirectTCPIP(%+v) err=%v, want ok=%v", tc.d, err, tc.ok)
		}
	}
	for _, tc := range []struct {
		f  tcpipForward
		ok bool
	}{
		{tcpipForward{Addr: "", Port: 0}, true},
		{tcpipForward{Addr: "localhost", Port: 8080}, true},
		{tcpipForward{Addr: "x", Port: 65536}, false},
		{tcpipForward{Addr: "a b", Port: 1}, false},
	} {
		if _, err := parseTCPIPForward(ssh.Marshal(tc.f)); (err == nil) != tc.ok {
			t.Errorf("parseTCPIPForward(%+v) err=%v, want ok=%v", tc.f, err, tc.ok)
		}
	}
}

func TestParsePasswdLine(t *testing.T) {
	tests := []struct {
		line string
		want passwdEntry
		ok   bool
	}{
		{"root:x:0:0:root:/root:/bin/bash", passwdEntry{"root", 0, 0, "/root", "/bin/bash"}, true},
		{"svc:x:999:998::/var/lib/svc:/usr/sbin/nologin\n", passwdEntry{"svc", 999, 998, "/var/lib/svc", "/usr/sbin/nologin"}, true},
		{"bad:x:notanumber:0::/:/bin/sh", passwdEntry{}, false},
		{"short:x:0:0", passwdEntry{}, false},
		{"+nis::::::", passwdEntry{}, false},
		{":x:0:0::/:/bin/sh", passwdEntry{}, false},
	}
	for _, tc := range tests {
		got, err := parsePasswdLine(tc.line)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parsePasswdLine(%q) = %+v, %v", tc.line, got, err)
		}
	}
	data := []byte("# comment\nroot:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/zsh\n")
	if sh := shellFromPasswd(data, "alice"); sh != "/bin/zsh" {
		t.Errorf("shellFromPasswd(alice) = %q", sh)
	}
	if sh := shellFromPasswd(data, "bob"); sh != "" {
		t.Errorf("shellFromPasswd(bob) = %q", sh)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", e.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Say nothing: the server must hang up by itself.
	_ = c.SetReadDeadline(patience.Deadline(t))
	buf := make([]byte, 512)
	start := time.Now()
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("server kept an idle unauthenticated connection open")
			}
			break
		}
	}
	// At the configured timeout, not the default one: the margin between
	// the two is wide enough for any load.
	if d := time.Since(start); d > defaultHandshakeTimeout/2 {
		t.Errorf("closed after %v (configured timeout 300ms, default %v)", d, defaultHandshakeTimeout)
	}
}

// TestCloseEndsHandshakes: closing the server ends a connection still in
// its handshake at once, not at the handshake timeout.
func TestCloseEndsHandshakes(t *testing.T) {
	// The handshake timeout is beyond the test's patience: only Close
	// can end the handshake in time.
	e := newEnv(t, func(c *Config) { c.HandshakeTimeout = 24 * time.Hour })
	c, err := net.Dial("tcp", e.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil { // the server's version line: the handshake began
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- e.srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("Close waited for a connection in its handshake")
	}
	_ = c.SetReadDeadline(patience.Deadline(t))
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the connection stayed open after Close")
			}
			break
		}
	}
}

func FuzzSessionRequests(f *testing.F) {
	f.Add("pty-req", ssh.Marshal(ptyRequest{Term: "xterm", Columns: 80, Rows: 24}))
	f.Add("env", ssh.Marshal(envRequest{Name: "LANG", Value: "C"}))
	f.Add("exec", ssh.Marshal(execRequest{Command: "echo hi"}))
	f.Add("subsystem", ssh.Marshal(subsystemRequest{Name: "sftp"}))
	f.Add("signal", ssh.Marshal(signalRequest{Signal: "INT"}))
	f.Add("window-change", ssh.Marshal(windowChange{Columns: 1, Rows: 2}))
	f.Add("direct-tcpip", ssh.Marshal(directTCPIP{Host: "h", Port: 1}))
	f.Add("tcpip-forward", ssh.Marshal(tcpipForward{Addr: "", Port: 0}))
	f.Fuzz(func(t *testing.T, kind string, payload []byte) {
		switch kind {
		case "pty-req":
			if r, err := parsePtyRequest(payload); err == nil {
				if r.Columns > maxWindowDim || r.Rows > maxWindowDim || len(r.Term) > maxTermLen {
					t.Fatalf("limits not enforced: %+v", r)
				}
			}
		case "env":
			if e, err := parseEnv(payload); err == nil {
				if e.Name != "TERM" && e.Name != "LANG" && !strings.HasPrefix(e.Name, "LC_") {
					t.Fatalf("accepted env %q", e.Name)
				}
				if strings.ContainsAny(e.Name, "=\x00") || strings.Contains(e.Value, "\x00") {
					t.Fatalf("accepted bad env %q=%q", e.Name, e.Value)
				}
			}
		case "exec":
			if c, err := parseExec(payload); err == nil && (len(c) > maxCommandLen || strings.Contains(c, "\x00")) {
				t.Fatalf("accepted command of %d bytes", len(c))
			}
		case "subsystem":
			_, _ = parseSubsystem(payload)
		case "signal":
			if s, err := parseSignal(payload); err == nil && s == syscall.SIGSTOP {
				t.Fatal("accepted STOP")
			}
		case "window-change":
			if w, err := parseWindowChange(payload); err == nil && (w.Columns > maxWindowDim || w.Rows > maxWindowDim) {
				t.Fatalf("limits not enforced: %+v", w)
			}
		case "direct-tcpip":
			if d, err := parseDirectTCPIP(payload); err == nil && (d.Port == 0 || d.Port > 65535 || d.Host == "") {
				t.Fatalf("accepted %+v", d)
			}
		case "tcpip-forward":
			if fw, err := parseTCPIPForward(payload); err == nil && fw.Port > 65535 {
				t.Fatalf("accepted %+v", fw)
			}
		}
	})
}

func FuzzParsePasswdLine(f *testing.F) {
	f.Add("root:x:0:0:root:/root:/bin/bash")
	f.Add("a:b:c:d:e:f:g")
	f.Add("::::::")
	f.Fuzz(func(t *testing.T, line string) {
		e, err := parsePasswdLine(line)
		if err != nil {
			return
		}
		if e.Name == "" || strings.Contains(e.Name, ":") || strings.Contains(e.Shell, ":") {
			t.Fatalf("bad entry %+v from %q", e, line)
		}
	})
}

func FuzzParseSFTPReport(f *testing.F) {
	f.Add([]byte(`{"op":"open","path":"/a","read":1,"write":2}`))
	f.Add([]byte(`{"op":"rename","path":"/a","target":"/b","error":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseSFTPReport(line)
		if err != nil {
			return
		}
		if r.Read < 0 || r.Write < 0 || r.Op == "" {
			t.Fatalf("accepted %+v", r)
		}
	})
}
