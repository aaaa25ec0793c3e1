//go:build integration

package clustertest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/tunnel"
)

// nodeConnMetric reads warden_proxy_node_connections_total{path=...}.
func nodeConnMetric(t *testing.T, c *Cluster, path string) int {
	t.Helper()
	return metricValue(t, c, `warden_proxy_node_connections_total{path="`+path+`"}`)
}

// metricValue reads one integer sample from the cluster's /metrics (0 when
// absent).
func metricValue(t *testing.T, c *Cluster, series string) int {
	t.Helper()
	resp, err := http.Get(c.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", c.MetricsURL(), resp.Status)
	}
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\d+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// jumpConfig writes an ssh_config for `ssh -J wjump`: the proxy as a plain
// OpenSSH jump host, with the profile's certificate and known hosts.
func jumpConfig(t *testing.T, c *Cluster, home string) string {
	t.Helper()
	return jumpConfigWith(t, c, home, filepath.Join(home, "key-cert.pub"))
}

// jumpConfigWith is jumpConfig with the given certificate (for the
// profile's key).
func jumpConfigWith(t *testing.T, c *Cluster, home, cert string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(c.ProxyAddr())
	cfg := fmt.Sprintf(`Host wjump
    HostName %s
    Port %s
Host *
    User %s
    IdentityFile %s
    CertificateFile %s
    IdentitiesOnly yes
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
`, host, port, osLogin, filepath.Join(home, "key"), cert, filepath.Join(home, "known_hosts"))
	path := filepath.Join(t.TempDir(), "jump_config")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSessionDataPaths: session bytes reach nodes over data connections the
// node dials back (no second encryption), or over the tunnel when the node
// is configured tunnel-only; both work with the real OpenSSH client through
// ProxyCommand and ssh -J.
func TestSessionDataPaths(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NoNode: true})
	c.StartNode("web1", nil)
	c.StartNode("legacy1", nil, func(cfg *nodeagent.Config) { cfg.TunnelOnly = true })
	c.WaitForNodes(2)
	u := c.AddUser("alice", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	pcCfg := c.SSHConfig(home)
	jCfg := jumpConfig(t, c, home)

	payload := make([]byte, 3<<20)
	rand.Read(payload)
	// Readable by the OS login on the node side too.
	dir, err := os.MkdirTemp("", "warden-data-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "payload")
	if err := os.WriteFile(src, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"web1", "legacy1"} {
		for _, path := range []struct {
			name string
			args []string
		}{
			{"ProxyCommand", sshArgs(pcCfg, osLogin+"@"+node)},
			{"ssh -J", sshArgs(jCfg, "-J", "wjump", osLogin+"@"+node)},
		} {
			t.Run(node+" "+path.name, func(t *testing.T) {
				before := nodeConnMetric(t, c, "direct") + nodeConnMetric(t, c, "tunnel")
				// Bytes in both directions, checked end to end.
				r := Run(t, nil, "sh", "-c", "ssh "+quoteArgs(path.args)+" 'sha256sum' < "+src)
				if r.Code != 0 {
					t.Fatalf("ssh: %s", r)
				}
				if !strings.Contains(r.Stdout, sha256Hex(payload)) {
					t.Fatalf("upload corrupted: %s", r.Stdout)
				}
				r = Run(t, nil, "sh", "-c", "ssh "+quoteArgs(path.args)+" 'cat "+src+"' | sha256sum")
				if r.Code != 0 || !strings.Contains(r.Stdout, sha256Hex(payload)) {
					t.Fatalf("download corrupted: %s", r)
				}
				if after := nodeConnMetric(t, c, "direct") + nodeConnMetric(t, c, "tunnel"); after != before+2 {
					t.Fatalf("node connections %d -> %d", before, after)
				}
			})
		}
	}
	// web1 dialed back for every session; legacy1 never did.
	if d, tu := nodeConnMetric(t, c, "direct"), nodeConnMetric(t, c, "tunnel"); d != 4 || tu != 4 {
		t.Fatalf("node connections: direct %d, tunnel %d; want 4 and 4", d, tu)
	}
	// warden ssh takes the same path.
	r := c.Warden(home, nil, "ssh", osLogin+"@web1", "echo fast")
	if r.Code != 0 || !strings.Contains(r.Stdout, "fast") || nodeConnMetric(t, c, "direct") != 5 {
		t.Fatalf("warden ssh: %s", r)
	}
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// TestDataConnectionTickets: data connections need a ticket the proxy
// handed out over an authenticated connection; tickets are single use,
// bound to the requester's address, and access checks come first.
func TestDataConnectionTickets(t *testing.T) {
	c := New(t, Options{NoNode: true})
	c.StartNode("web1", nil)
	c.WaitForNodes(1)
	u := c.AddUser("bob", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	p, err := client.LoadProfile(home)
	if err != nil {
		t.Fatal(err)
	}
	signer, _, err := p.Signer()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := ssh.Dial("tcp", c.ProxyAddr(), &ssh.ClientConfig{User: osLogin, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: patience.Left(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	redeem := func(t *testing.T, local string, preamble string) (string, error) {
		t.Helper()
		d := net.Dialer{Deadline: patience.Deadline(t)}
		if local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		}
		conn, err := d.Dial("tcp", c.ProxyAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write([]byte(preamble))
		conn.SetReadDeadline(patience.Deadline(t))
		// The status byte and the node's SSH banner may come in separate
		// reads: read until the answer is whole (or the connection ends).
		var got []byte
		b := make([]byte, 64)
		for {
			n, err := conn.Read(b)
			got = append(got, b[:n]...)
			s := string(got)
			switch {
			case err != nil:
				return s, err
			case strings.HasPrefix(s, "\x01") && strings.HasSuffix(s, "\n"), strings.Contains(s, "SSH-2.0-"):
				return s, nil
			}
		}
	}
	ticket := func(t *testing.T) string {
		t.Helper()
		ok, reply, err := pc.SendRequest(tunnel.RequestDial, true, ssh.Marshal(struct{ Host string }{"web1"}))
		if err != nil || !ok {
			t.Fatalf("dial request: %v %v %q", ok, err, reply)
		}
		var r struct{ Ticket string }
		if err := ssh.Unmarshal(reply, &r); err != nil {
			t.Fatal(err)
		}
		return r.Ticket
	}
	user := func(ticket string) string { return tunnel.DataMagic + "u" + ticket + "\n" }

	t.Run("forged tickets", func(t *testing.T) {
		forged := hex.EncodeToString(make([]byte, 32))
		if got, _ := redeem(t, "", user(forged)); !strings.HasPrefix(got, "\x01unknown or expired ticket") {
			t.Fatalf("forged user ticket: %q", got)
		}
		// A forged node ticket is closed without a word.
		if got, err := redeem(t, "", tunnel.DataMagic+"n"+forged+"\n"); got != "" || err == nil {
			t.Fatalf("forged node ticket: %q %v", got, err)
		}
		for _, bad := range []string{tunnel.DataMagic + "x" + forged + "\n", tunnel.DataMagic + "u" + strings.Repeat("zz", 32) + "\n",
			tunnel.DataMagic + "u" + forged + "!"} {
			if got, err := redeem(t, "", bad); got != "" || err == nil {
				t.Fatalf("malformed preamble %q: %q %v", bad, got, err)
			}
		}
	})
	t.Run("bound to the address and single use", func(t *testing.T) {
		tk := ticket(t)
		if got, _ := redeem(t, "127.0.0.2", user(tk)); !strings.HasPrefix(got, "\x01") {
			t.Fatalf("ticket redeemed from another address: %q", got)
		}
		got, err := redeem(t, "", user(tk))
		if err != nil || !strings.HasPrefix(got, "\x00SSH-2.0-") {
			t.Fatalf("valid ticket: %q %v", got, err)
		}
		if got, _ := redeem(t, "", user(tk)); !strings.HasPrefix(got, "\x01") {
			t.Fatalf("ticket used twice: %q", got)
		}
	})
	t.Run("access is checked before a ticket", func(t *testing.T) {
		_, err := tunnel.DialData(context.Background(), pc, c.ProxyAddr(), "nope")
		var de *tunnel.DialError
		if !errors.As(err, &de) || !strings.Contains(de.Msg, "web1") {
			t.Fatalf("unknown node: %v", err)
		}
		admin := t.TempDir() // the local admin identity
		if r := c.Warden(admin, nil, "lock", "--user", "bob", "--message", "stop"); r.Code != 0 {
			t.Fatalf("lock: %s", r)
		}
		_, err = tunnel.DialData(context.Background(), pc, c.ProxyAddr(), "web1")
		if !errors.As(err, &de) || !strings.Contains(de.Msg, "stop") {
			t.Fatalf("locked user got a data connection: %v", err)
		}
	})
}
