//go:build integration

package clustertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// waitRecording waits until the session's recording is complete on auth.
func (c *Cluster) waitRecording(t *testing.T, pred func(recording.Info) bool) recording.Info {
	t.Helper()
	deadline := patience.Deadline(t)
	for {
		list, err := c.Admin.ListRecordings(context.Background(), "", "", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range list {
			if pred(in) {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching recording: %+v", list)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const recordInputRole = `
kind: role
metadata: {name: recorded}
spec:
  options: {record_session: strict, record_input: true}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`

// TestRecordingEndToEnd: a real OpenSSH PTY session is recorded, replays
// with warden play, exports to a file asciinema accepts, and is found by
// search with the offset of the typed command.
func TestRecordingEndToEnd(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "web1"})
	c.ApplyRoles(recordInputRole)
	u := c.AddUser("dev", []string{"recorded"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	script := "echo hello-$((6*7))-recorded\nsleep 0.3\nexit\n"
	r := Run(t, strings.NewReader(script), "ssh", sshArgs(cfg, "-tt", osLogin+"@web1")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "hello-42-recorded") {
		t.Fatalf("ssh -tt: %s", r)
	}
	in := c.waitRecording(t, func(in recording.Info) bool { return in.Complete && in.User == "dev" })
	if in.Login != osLogin || in.Node != "web1" || in.Length == 0 || len(in.SHA256) != 64 {
		t.Fatalf("recording info %+v", in)
	}
	admin := t.TempDir()
	if r := c.Warden(admin, nil, "recordings", "ls", "--user", "dev"); !strings.Contains(r.Stdout, in.SessionID) || !strings.Contains(r.Stdout, "complete") {
		t.Fatalf("recordings ls: %s", r)
	}
	play := c.Warden(admin, nil, "play", in.SessionID, "--speed", "50", "--skip-idle")
	if play.Code != 0 || !strings.Contains(play.Stdout, "hello-42-recorded") {
		t.Fatalf("warden play: %s", play)
	}
	exp := c.Warden(admin, nil, "recordings", "export", in.SessionID)
	file := filepath.Join(t.TempDir(), "s.cast")
	if err := os.WriteFile(file, []byte(exp.Stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	if int64(len(exp.Stdout)) != in.Length {
		t.Fatalf("export has %d bytes, recording %d", len(exp.Stdout), in.Length)
	}
	// The hash auth recorded (in this all-in-one cluster, the node's, taken
	// as given) is that of the bytes it serves.
	if sum := sha256.Sum256([]byte(exp.Stdout)); hex.EncodeToString(sum[:]) != in.SHA256 {
		t.Fatalf("exported bytes have SHA-256 %x, recording info says %s", sum, in.SHA256)
	}
	// asciinema 2.2's cat wants a terminal: run it under script(1).
	ac := Run(t, nil, "script", "-qec", "asciinema cat "+file, "/dev/null")
	if ac.Code != 0 || !strings.Contains(ac.Stdout, "hello-42-recorded") {
		t.Fatalf("asciinema cat: %s", ac)
	}
	// The typed command is found, with its offset.
	s := c.Warden(admin, nil, "recordings", "search", "echo hello-$((6*7))", "-o", "json")
	var hits []auth.RecordingMatch
	if err := json.Unmarshal([]byte(s.Stdout), &hits); err != nil || len(hits) == 0 {
		t.Fatalf("recordings search: %v %s", err, s)
	}
	typed := false
	for _, h := range hits {
		if h.SessionID == in.SessionID && h.Type == "i" {
			typed = true
		}
	}
	if !typed {
		t.Fatalf("typed command not found: %+v", hits)
	}
	// Replay from the hit's offset shows the command's output.
	from := c.Warden(admin, nil, "play", in.SessionID, "--speed", "50", "--from", hits[0].Offset.String())
	if !strings.Contains(from.Stdout, "hello-42-recorded") {
		t.Fatalf("play --from: %s", from)
	}
	// An interactive shell without a PTY (ssh -T) is recorded too: strict
	// recording cannot be dodged by refusing a terminal.
	r = Run(t, strings.NewReader("echo no-pty-$((2*21))\n"), "ssh", sshArgs(cfg, "-T", osLogin+"@web1")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "no-pty-42") {
		t.Fatalf("ssh -T: %s", r)
	}
	noPTY := c.waitRecording(t, func(x recording.Info) bool {
		return x.Complete && x.User == "dev" && x.SessionID != in.SessionID
	})
	if p := c.Warden(admin, nil, "play", noPTY.SessionID, "--speed", "50"); !strings.Contains(p.Stdout, "no-pty-42") {
		t.Fatalf("no-PTY shell recording: %s", p)
	}
	// A session without a recording is named, with where to look.
	missing := strings.Repeat("0", len(in.SessionID))
	if p := c.Warden(admin, nil, "play", missing); p.Code == 0 || !strings.Contains(p.Stderr, fmt.Sprintf("no recording of session %q", missing)) {
		t.Fatalf("play of an unknown session: %s", p)
	}
	// session.end carries the recording's length and hash.
	testkit.WaitFor(t, "session.end with the recording hash "+in.SHA256, func() bool {
		ev := c.Warden(admin, nil, "audit", "search", "--type", "session.end", "--user", "dev", "-o", "json")
		return strings.Contains(ev.Stdout, in.SHA256)
	})
}

// TestRecordingSurvivesAuthOutage: auth is down for 30 s in the middle of a
// session; the session goes on (best_effort) and the recording arrives
// complete, byte for byte.
func TestRecordingSurvivesAuthOutage(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	dir := t.TempDir()
	c := New(t, Options{NoNode: true, DataDir: dir})
	addr := c.ProxyAddr()
	n := c.StartNode("edge1", nil, func(cfg *NodeAgentCfg) { cfg.Listen = "127.0.0.1:0" })
	c.WaitForNodes(1)
	u := c.AddUser("dev", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	args := directArgs(home, n.Addr(), n.ID(), "-tt", osLogin+"@edge1")
	// The session prints before, during and after the outage.
	cmd := exec.Command("ssh", args...)
	stdin, _ := cmd.StdinPipe()
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	fmt.Fprintln(stdin, "echo before-outage-$((6*7))")
	testkit.WaitFor(t, "output before the outage", func() bool { return strings.Contains(out.String(), "before-outage-42") })
	c.Proc.Close()
	fmt.Fprintln(stdin, "for i in 1 2 3; do echo during-outage-$i; sleep 1; done")
	time.Sleep(30 * time.Second)
	c2 := New(t, Options{NoNode: true, DataDir: dir, Proxy: serviceProxy(addr)})
	fmt.Fprintln(stdin, "echo after-outage; exit")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("session did not survive the outage: %v\n%s", err, out.String())
	}
	in := c2.waitRecording(t, func(in recording.Info) bool { return in.Complete && in.User == "dev" })
	rc, err := c2.Admin.OpenRecording(context.Background(), in.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b := new(strings.Builder)
	if _, err := fmt.Fprint(b, readAll(t, rc)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"before-outage", "during-outage-3", "after-outage"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("recording lacks %q", want)
		}
	}
	if in.Interrupted {
		t.Fatal("a cleanly ended session was marked interrupted")
	}
}

// TestRecordingSurvivesNodeKill: kill -9 the node process mid-session and
// restart it: everything recorded before the kill reaches auth.
// nodeProcess prepares a separate `warden start --services node` process
// joining proxyAddr, also listening directly on the returned port; start
// runs it (first: with a fresh join token) with the same data directory,
// nodeDir, each time.
func nodeProcess(t *testing.T, c *Cluster, proxyAddr, name string) (start func(first bool) *exec.Cmd, port, nodeDir string) {
	t.Helper()
	tok := c.Warden(t.TempDir(), nil, "tokens", "add", "--type", "node", "--ttl", "5m")
	m := regexp.MustCompile(`token ([0-9a-f]+) expires(?s:.*)--ca-pin (\S+)`).FindStringSubmatch(tok.Stdout)
	if m == nil {
		t.Fatalf("tokens add: %s", tok)
	}
	nodeDir = t.TempDir()
	port = strconv.Itoa(testkit.FreePort(t))
	return func(first bool) *exec.Cmd {
		args := []string{"start", "--services", "node", "--proxy", proxyAddr, "--name", name,
			"--data-dir", nodeDir, "--node-listen", "127.0.0.1:" + port}
		cmd := exec.Command(WardenBinary, args...)
		if first {
			cmd.Args = append(cmd.Args, "--ca-pin", m[2])
			cmd.Env = append(os.Environ(), "WARDEN_TOKEN="+m[1])
		}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}, port, nodeDir
}

// readGlob returns the contents of the files matching pattern.
func readGlob(pattern string) string {
	var all strings.Builder
	paths, _ := filepath.Glob(pattern)
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		all.Write(b)
	}
	return all.String()
}

func TestRecordingSurvivesNodeKill(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NoNode: true})
	start, port, nodeDir := nodeProcess(t, c, c.ProxyAddr(), "victim")
	node := start(true)
	defer func() { node.Process.Kill(); node.Wait() }()
	c.WaitForNodes(1)
	nodes, _ := c.Admin.ListNodes(context.Background(), nil)
	u := c.AddUser("dev", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	cmd := exec.Command("ssh", directArgs(home, "127.0.0.1:"+port, nodes[0].ID, "-tt", osLogin+"@victim")...)
	stdin, _ := cmd.StdinPipe()
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	fmt.Fprintln(stdin, "echo recorded-before-kill")
	testkit.WaitFor(t, "the command's output", func() bool {
		return strings.Contains(out.String(), "recorded-before-kill\r\n") && strings.Count(out.String(), "recorded-before-kill") >= 2
	})
	// The spool flushes what it buffered to its file: what is in the file
	// survives kill -9.
	testkit.WaitFor(t, "the output in the node's spool file", func() bool {
		return strings.Count(readGlob(filepath.Join(nodeDir, "node", "spool", "*.cast")), "recorded-before-kill") >= 2
	})
	node.Process.Signal(syscall.SIGKILL)
	node.Wait()
	cmd.Wait()
	node = start(false)
	in := c.waitRecording(t, func(in recording.Info) bool { return in.Complete && in.User == "dev" })
	if !in.Interrupted {
		t.Fatalf("recording of a killed node not marked interrupted: %+v", in)
	}
	rc, err := c.Admin.OpenRecording(context.Background(), in.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if s := readAll(t, rc); !strings.Contains(s, "recorded-before-kill") {
		t.Fatalf("recording lost what came before the kill: %q", s)
	}
}

// TestAuditSurvivesNodeKillDuringOutage: events a node could not deliver
// (auth down) survive kill -9 of the node agent and arrive once both are
// back (the node's audit journal).
func TestAuditSurvivesNodeKillDuringOutage(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	dir := t.TempDir()
	c := New(t, Options{NoNode: true, DataDir: dir})
	addr := c.ProxyAddr()
	start, port, nodeDir := nodeProcess(t, c, addr, "journal1")
	node := start(true)
	defer func() { node.Process.Kill(); node.Wait() }()
	c.WaitForNodes(1)
	nodes, _ := c.Admin.ListNodes(context.Background(), nil)
	home := c.Login(c.AddUser("dev", []string{"access"}, []string{osLogin}))

	c.Proc.Close() // auth and proxy down
	marker := "during-outage-" + randHex(t)
	r := Run(t, nil, "ssh", directArgs(home, "127.0.0.1:"+port, nodes[0].ID, osLogin+"@journal1", "echo "+marker)...)
	if r.Code != 0 || !strings.Contains(r.Stdout, marker) {
		t.Fatalf("ssh while auth is down: %s", r)
	}
	// The exec event is emitted as the session closes, into the node's
	// journal: what is in the file survives kill -9.
	testkit.WaitFor(t, "the exec event in the node's journal", func() bool {
		return strings.Contains(readGlob(filepath.Join(nodeDir, "node", "events.journal")), marker)
	})
	node.Process.Signal(syscall.SIGKILL)
	node.Wait()

	c2 := New(t, Options{NoNode: true, DataDir: dir, Proxy: service.ProxyConfig{Listen: addr}})
	node = start(false)
	testkit.WaitFor(t, "the exec event from the outage", func() bool {
		r := c2.Warden(t.TempDir(), nil, "audit", "search", "--type", "exec", "--user", "dev", "--text", marker, "-o", "json", "--data-dir", dir)
		return r.Code == 0 && strings.Contains(r.Stdout, marker)
	})
}
