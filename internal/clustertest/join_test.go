//go:build integration

package clustertest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

const joinRoles = `
kind: role
metadata: {name: mentor}
spec:
  allow:
    node_labels: {'*': '*'}
    join_sessions:
      - {roles: [access], modes: [observer, peer]}
    rules:
      - {resources: [session], verbs: [list]}
---
kind: role
metadata: {name: nosy}
spec:
  allow:
    node_labels: {'*': '*'}
    rules:
      - {resources: [session], verbs: [list]}
`

// bgProcess is a command running in the background with its output kept.
type bgProcess struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	out, err syncbuf.Buffer
	done     chan int
}

func startBackground(t *testing.T, name string, args ...string) *bgProcess {
	t.Helper()
	p := &bgProcess{cmd: exec.Command(name, args...), done: make(chan int, 1)}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		p.done <- code
	}()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

// waitFor waits until the output (stdout or stderr) contains want.
func (p *bgProcess) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := patience.Deadline(t)
	for !strings.Contains(p.out.String()+p.err.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output:\n%s\nstderr:\n%s", want, p.out.String(), p.err.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *bgProcess) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-p.done:
		return code
	case <-time.After(patience.Left(t)):
		t.Fatalf("still running:\n%s\nstderr:\n%s", p.out.String(), p.err.String())
		return -1
	}
}

// TestJoinSession: another user joins a live OpenSSH session as an
// observer (sees what happens from then on) and as a peer (types into it);
// a user whose roles do not allow it is refused; participants are listed
// and joins and leaves audited.
func TestJoinSession(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "web1"})
	c.ApplyRoles(joinRoles)
	alice := c.Login(c.AddUser("alice", []string{"access"}, []string{osLogin}))
	bob := c.Login(c.AddUser("bob", []string{"mentor"}, nil))
	eve := c.Login(c.AddUser("eve", []string{"nosy"}, nil))

	owner := startBackground(t, "ssh", sshArgs(c.SSHConfig(alice), "-tt", osLogin+"@web1")...)
	io.WriteString(owner.stdin, "echo READY-$((1+1))\n")
	owner.waitFor(t, "READY-2")

	var id string
	deadline := patience.Deadline(t)
	for id == "" {
		r := c.Warden(bob, nil, "sessions", "ls", "-o", "json")
		var list []auth.LiveSession
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &list) != nil {
			t.Fatalf("sessions ls: %s", r)
		}
		for _, s := range list {
			if s.User == "alice" {
				id = s.ID
			}
		}
		if id == "" && time.Now().After(deadline) {
			t.Fatalf("alice's session is not listed: %s", r.Stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A join-only connection (the internal principal as login; OpenSSH
	// refuses such names, warden join uses it) does nothing else, and
	// nobody can use someone else's.
	dialAs := func(login string) (*ssh.Client, error) {
		p, err := client.LoadProfile(bob)
		if err != nil {
			t.Fatal(err)
		}
		signer, _, err := p.Signer()
		if err != nil {
			t.Fatal(err)
		}
		cfg := &ssh.ClientConfig{User: login, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: patience.Left(t)}
		pc, err := ssh.Dial("tcp", c.ProxyAddr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		conn, err := pc.Dial("tcp", "web1:0")
		if err != nil {
			t.Fatal(err)
		}
		cc, chans, reqs, err := ssh.NewClientConn(conn, "web1", cfg)
		if err != nil {
			return nil, err
		}
		return ssh.NewClient(cc, chans, reqs), nil
	}
	if _, err := dialAs("-warden-user-alice"); err == nil {
		t.Fatal("bob connected with alice's internal principal")
	}
	jc, err := dialAs("-warden-user-bob")
	if err != nil {
		t.Fatal(err)
	}
	run := func(cmd string) (string, error) {
		sess, err := jc.NewSession()
		if err != nil {
			return "", err
		}
		defer sess.Close()
		out, err := sess.CombinedOutput(cmd)
		return string(out), err
	}
	if out, err := run("id"); err == nil || !strings.Contains(out, "usage: join") {
		t.Fatalf("join-only connection ran a command: %v %q", err, out)
	}
	if out, err := run("join nope observer"); err == nil || !strings.Contains(out, "no live session nope") {
		t.Fatalf("join of an unknown session: %v %q", err, out)
	}
	if sess, err := jc.NewSession(); err == nil {
		if err := sess.RequestSubsystem("sftp"); err == nil {
			t.Fatal("join-only connection started sftp")
		}
		if err := sess.Shell(); err == nil {
			t.Fatal("join-only connection started a shell")
		}
		sess.Close()
	}
	if _, err := jc.Dial("tcp", "127.0.0.1:22"); err == nil {
		t.Fatal("join-only connection forwarded a port")
	}
	if _, err := jc.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Fatal("join-only connection opened a remote forward")
	}
	jc.Close()

	// Not allowed: refused with the reason, and audited.
	r := c.Warden(eve, nil, "join", id)
	if r.Code == 0 || !strings.Contains(r.Stderr, "do not allow joining alice's sessions") {
		t.Fatalf("eve joined: %s", r)
	}

	observer := startBackground(t, WardenBinary, "--home", bob, "join", id)
	observer.waitFor(t, "joined alice's session")
	// The owner is told, on their own terminal.
	owner.waitFor(t, "warden: bob joined this session as observer\r\n")
	io.WriteString(owner.stdin, "echo OBSERVED-$((6*7))\n")
	observer.waitFor(t, "OBSERVED-42")
	waitParticipants(t, c, bob, id, "alice,bob")

	peer := startBackground(t, WardenBinary, "--home", bob, "join", id, "--mode", "peer")
	peer.waitFor(t, "joined alice's session")
	io.WriteString(peer.stdin, "echo PEER-$((5*5))\n")
	owner.waitFor(t, "PEER-25")
	observer.waitFor(t, "PEER-25")
	peer.stdin.Close() // the peer leaves
	if code := peer.wait(t); code != 0 {
		t.Fatalf("peer exit %d: %s", code, peer.err.String())
	}
	owner.waitFor(t, "warden: bob (peer) left this session\r\n")

	io.WriteString(owner.stdin, "exit\n")
	if code := owner.wait(t); code != 0 {
		t.Fatalf("owner's ssh exit %d", code)
	}
	if code := observer.wait(t); code != 0 || !strings.Contains(observer.err.String(), "the session ended") {
		t.Fatalf("observer exit %d: %s", code, observer.err.String())
	}

	// Audited: eve refused, bob joined twice and left twice.
	deadline = patience.Deadline(t)
	for {
		joins, leaves := auditEvents(t, c, audit.SessionJoin), auditEvents(t, c, audit.SessionLeave)
		var ok, refused, left int
		for _, ev := range joins {
			switch {
			case ev.User == "bob" && ev.Success && ev.SessionID == id && ev.Fields["owner"] == "alice":
				ok++
			case ev.User == "eve" && !ev.Success:
				refused++
			}
		}
		for _, ev := range leaves {
			if ev.User == "bob" && ev.SessionID == id {
				left++
			}
		}
		if ok == 2 && refused == 1 && left == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit: %d joins, %d refused, %d leaves:\n%+v\n%+v", ok, refused, left, joins, leaves)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A command without a terminal is listed, but cannot be joined.
	cmd := startBackground(t, "ssh", sshArgs(c.SSHConfig(alice), osLogin+"@web1", liveCommand)...)
	cmd.waitFor(t, "started")
	var execID string
	testkit.WaitFor(t, "alice's command in sessions ls", func() bool {
		var list []auth.LiveSession
		_ = json.Unmarshal([]byte(c.Warden(bob, nil, "sessions", "ls", "-o", "json").Stdout), &list)
		for _, s := range list {
			if s.User == "alice" && s.Kind == "exec" && !s.TTY {
				execID = s.ID
			}
		}
		return execID != ""
	})
	if r := c.Warden(bob, nil, "join", execID); r.Code == 0 || !strings.Contains(r.Stderr, "without a terminal") {
		t.Fatalf("join of a session without a terminal: %s", r)
	}
}

func waitParticipants(t *testing.T, c *Cluster, home, id, want string) {
	t.Helper()
	deadline := patience.Deadline(t)
	for {
		r := c.Warden(home, nil, "sessions", "ls", "-o", "json")
		var list []auth.LiveSession
		_ = json.Unmarshal([]byte(r.Stdout), &list)
		for _, s := range list {
			if s.ID == id && strings.Join(s.Participants, ",") == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("participants of %s are not %s: %s", id, want, r.Stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func auditEvents(t *testing.T, c *Cluster, event string) []audit.Event {
	t.Helper()
	r := c.Warden(t.TempDir(), nil, "audit", "search", "--type", event, "-o", "json", "--data-dir", c.DataDir)
	if r.Code != 0 {
		t.Fatalf("audit search: %s", r)
	}
	var out []audit.Event
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		if line == "" {
			continue
		}
		var ev audit.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}
