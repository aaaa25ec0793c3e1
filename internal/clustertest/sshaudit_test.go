//go:build integration

package clustertest

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/sshtest"
)

// auditNote is one finding of ssh-audit about an algorithm.
type auditNote struct {
	kind, alg, level, text string
}

// sshAuditLine is "(kex) name -- [fail] text"; a finding continues on lines
// of the form "`- [warn] text".
var (
	sshAuditLine = regexp.MustCompile(`^\((kex|key|enc|mac)\) (\S+)\s+-- \[(\w+)\] (.*)$`)
	sshAuditMore = regexp.MustCompile("^\\s+`- \\[(\\w+)\\] (.*)$")
)

// parseSSHAudit reads ssh-audit's text report (-n). Its JSON (-j) in the
// Debian 12 version names the algorithms but not the findings.
func parseSSHAudit(out string) []auditNote {
	var notes []auditNote
	var cur auditNote
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := sshAuditLine.FindStringSubmatch(line); m != nil {
			cur = auditNote{kind: m[1], alg: m[2]}
			notes = append(notes, auditNote{kind: m[1], alg: m[2], level: m[3], text: m[4]})
		} else if m := sshAuditMore.FindStringSubmatch(line); m != nil && cur.alg != "" {
			notes = append(notes, auditNote{kind: cur.kind, alg: cur.alg, level: m[1], text: m[2]})
		} else {
			cur = auditNote{}
		}
	}
	return notes
}

// newerThanSSHAudit are algorithms Warden offers that ssh-audit releases
// older than the algorithms flag as "unknown algorithm" (a warning about
// the tool, not the server): the post-quantum hybrid key exchange and the
// strict key exchange marker (the Terrapin fix).
var newerThanSSHAudit = map[string]bool{"mlkem768x25519-sha256": true, "kex-strict-s-v00@openssh.com": true}

// sshAudit runs the real ssh-audit against addr and fails the test on any
// failure or warning about a key exchange, host key, cipher or MAC.
func sshAudit(t *testing.T, addr string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("ssh-audit"); err != nil {
		t.Fatalf("ssh-audit is required (apt-get install ssh-audit): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The exit status says only whether anything was flagged, unknown
	// algorithms included: the report is what counts.
	out, _ := exec.CommandContext(ctx, "ssh-audit", "-n", "-t", "20", "-p", port, host).CombinedOutput()
	notes := parseSSHAudit(string(out))
	seen := map[string]bool{}
	for _, n := range notes {
		seen[n.kind] = true
		if n.level != "fail" && n.level != "warn" {
			continue
		}
		if n.text == "unknown algorithm" && newerThanSSHAudit[n.alg] {
			continue
		}
		t.Errorf("ssh-audit %s: (%s) %s: [%s] %s", addr, n.kind, n.alg, n.level, n.text)
	}
	for _, kind := range []string{"kex", "key", "enc", "mac"} {
		if !seen[kind] {
			t.Fatalf("ssh-audit reported no %s algorithm; output:\n%s", kind, out)
		}
	}
	if t.Failed() {
		t.Logf("ssh-audit output:\n%s", out)
	}
}

// TestSSHServersOfferModernAlgorithms audits every SSH server a cluster
// runs: the proxy's port (jump host and node tunnels) and a node's own
// port, with ssh-audit and by reading what they offer.
func TestSSHServersOfferModernAlgorithms(t *testing.T) {
	c := New(t, Options{NodeListen: "127.0.0.1:0"})
	servers := map[string]string{"proxy": c.ProxyAddr(), "node": c.Proc.Node().Addr()}
	for name, addr := range servers {
		t.Run(name, func(t *testing.T) {
			k, err := sshtest.ServerKexInit(addr)
			if err != nil {
				t.Fatal(err)
			}
			if weak := sshtest.Weak(k, true); len(weak) > 0 {
				t.Errorf("%s offers weak algorithms: %v", name, weak)
			}
			sshAudit(t, addr)
		})
	}
}

func TestParseSSHAudit(t *testing.T) {
	out := "(kex) curve25519-sha256              -- [info] available since OpenSSH 7.4\n" +
		"(kex) ecdh-sha2-nistp256             -- [fail] using weak elliptic curves\n" +
		"                                     `- [info] available since OpenSSH 5.7\n" +
		"(mac) hmac-sha1                      -- [warn] using encrypt-and-MAC mode\n" +
		"                                     `- [warn] using weak hashing algorithm\n" +
		"\n(fin) ssh-ed25519: SHA256:x\n"
	got := parseSSHAudit(out)
	want := []auditNote{
		{"kex", "curve25519-sha256", "info", "available since OpenSSH 7.4"},
		{"kex", "ecdh-sha2-nistp256", "fail", "using weak elliptic curves"},
		{"kex", "ecdh-sha2-nistp256", "info", "available since OpenSSH 5.7"},
		{"mac", "hmac-sha1", "warn", "using encrypt-and-MAC mode"},
		{"mac", "hmac-sha1", "warn", "using weak hashing algorithm"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("note %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
