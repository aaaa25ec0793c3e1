//go:build integration

package clustertest

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// peerJoin is `warden join --mode peer` running, with its stdin open.
type peerJoin struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *syncbuf.Buffer
	ended chan error
}

func startPeerJoin(t *testing.T, c *Cluster, home, id string) *peerJoin {
	t.Helper()
	cmd := exec.Command(WardenBinary, "--data-dir", c.DataDir, "--home", home, "join", id, "--mode", "peer")
	p := &peerJoin{cmd: cmd, out: &syncbuf.Buffer{}, ended: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.in = in
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.ended <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

func (p *peerJoin) waitEnd(t *testing.T) {
	t.Helper()
	select {
	case <-p.ended:
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatalf("warden join did not end:\n%s", p.out.String())
	}
}

// Joining kubectl exec -it sessions as a peer (warden join --mode peer):
// the peer's keys reach the shell, over WebSocket (v5) and SPDY; the
// peer is a participant, audited with its mode; a joiner whose roles
// allow observing only is refused as a peer; what a peer types with the
// terminal's echo off is in the recording when the owner's roles record
// input; a lock on the peer ends their participation, not the session.
func TestKubePeerJoin(t *testing.T) {
	e := startKubeEnv(t)
	c := e.c
	c.ApplyRoles(`kind: role
metadata: {name: kube-input}
spec:
  options: {record_input: true}
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: ["system:masters"]
---
kind: role
metadata: {name: watch-only}
spec:
  allow:
    rules:
      - {resources: [session], verbs: [list]}
    join_sessions:
      - {roles: [kube-member, kube-input], modes: [observer]}
---
kind: role
metadata: {name: pair}
spec:
  allow:
    rules:
      - {resources: [session], verbs: [list]}
    join_sessions:
      - {roles: [kube-member, kube-input], modes: [observer, peer]}
`)
	admin := t.TempDir()
	owner := c.AddUser("owner", []string{"kube-input"}, nil)
	kubeconfig := e.kubeLogin(c.Login(owner), "test-k8s")
	peerHome := c.Login(c.AddUser("pairer", []string{"pair", "kube-viewer"}, nil))
	watcherHome := c.Login(c.AddUser("onlywatch", []string{"watch-only", "kube-viewer"}, nil))

	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}},
		{"websocket", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, term, out := kubectlTTY(t, tc.env, kubeconfig, "exec", "-it", "shell", "-n", "default", "--", "sh")
			testkit.WaitFor(t, "the owner's shell", func() bool {
				_, _ = term.Write([]byte("echo up-$((6*7))\n"))
				return strings.Contains(out.String(), "up-42")
			})
			id := liveKubeSession(t, c, admin, "owner", "kube-exec")
			if tc.name == "spdy" {
				if r := c.Warden(watcherHome, nil, "join", id, "--mode", "peer"); r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, "as peer (join_sessions)") {
					t.Fatalf("a peer join by one allowed to observe only: %s", r)
				}
			}
			p := startPeerJoin(t, c, peerHome, id)
			testkit.WaitFor(t, "the peer in the participants", func() bool {
				return strings.Contains(c.Warden(admin, nil, "sessions", "ls").Stdout, "owner,pairer")
			}, p.out)
			// The owner's kubectl is told, in its own protocol's stdout.
			joined := "warden: pairer joined this session as peer\r\n"
			testkit.WaitFor(t, "the join notice on the owner's terminal", func() bool { return strings.Contains(out.String(), joined) })
			marker := "peer-" + tc.name
			// Typed by the peer: the shell runs it; both see it.
			if _, err := io.WriteString(p.in, "echo "+marker+"-$((6*7))\n"); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, "the peer's command in the owner's shell", func() bool {
				return strings.Contains(out.String(), marker+"-42") && strings.Contains(p.out.String(), marker+"-42")
			}, p.out)
			// With the echo off, only a recording of the input has it.
			_, _ = term.Write([]byte("stty -echo; echo echo-$((2*3))-off\n"))
			testkit.WaitFor(t, "the terminal's echo off", func() bool { return strings.Contains(out.String(), "echo-6-off") })
			hidden := "hidden-" + tc.name
			if _, err := io.WriteString(p.in, "echo "+hidden+"-$((1+1))\n"); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, "the hidden command's output", func() bool { return strings.Contains(out.String(), hidden+"-2") })
			if strings.Contains(out.String(), hidden+"-$((1+1))") {
				t.Fatalf("the terminal echoed: %s", out.String())
			}
			evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.SessionJoin})
			joins := 0
			for _, ev := range evs {
				if ev.Success {
					joins++
					if ev.User != "pairer" || fmt.Sprint(ev.Fields["mode"]) != "peer" {
						t.Fatalf("session.join: %+v", ev)
					}
				} else if ev.User != "onlywatch" || !strings.Contains(ev.Error, "as peer") {
					t.Fatalf("a refused session.join: %+v", ev)
				}
			}
			if err != nil || joins != 1 {
				t.Fatalf("session.join: %v %+v", err, evs)
			}
			if tc.name == "websocket" {
				// A lock on the peer ends their part only.
				if r := c.Warden(admin, nil, "lock", "--user", "pairer", "--message", "pairing over", "--ttl", "1m"); r.Code != 0 {
					t.Fatalf("lock the peer: %s", r)
				}
				p.waitEnd(t)
				if !strings.Contains(p.out.String(), "pairing over") {
					t.Fatalf("the locked peer's output: %s", p.out.String())
				}
				testkit.WaitFor(t, "session.leave of the locked peer", func() bool {
					evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.SessionLeave})
					return err == nil && len(evs) == 1 && strings.Contains(fmt.Sprint(evs[0].Fields["reason"]), "pairing over")
				})
				testkit.WaitFor(t, "the session after the peer's lock", func() bool {
					_, _ = term.Write([]byte("echo after-$((6*7))\n"))
					return strings.Contains(out.String(), "after-42")
				})
			} else {
				_ = p.in.Close() // end of input: the peer leaves
				p.waitEnd(t)
			}
			left := "warden: pairer (peer) left this session\r\n"
			testkit.WaitFor(t, "the leave notice on the owner's terminal", func() bool { return strings.Contains(out.String(), left) })
			testkit.WaitFor(t, "the shell after the notices", func() bool {
				_, _ = term.Write([]byte("echo still-$((6*7))\n"))
				return strings.Contains(out.String(), "still-42")
			})
			_, _ = term.Write([]byte("exit\n"))
			waitExit(t, cmd, out)
			testkit.WaitFor(t, "recording.complete of "+id, func() bool {
				evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.RecordingComplete})
				return err == nil && len(evs) == 1
			})
			if r := c.Warden(admin, nil, "recordings", "search", "echo "+hidden+"-$((1+1))"); r.Code != 0 || !strings.Contains(r.Stdout, id) {
				t.Fatalf("the peer's hidden input is not in the recording: %s", r)
			}
			// The notices are recorded, and the recording stays valid.
			if r := c.Warden(admin, nil, "recordings", "verify", id); r.Code != 0 {
				t.Fatalf("verify the recording: %s", r)
			}
			if r := c.Warden(admin, nil, "play", id, "--speed", "1000"); r.Code != 0 || !strings.Contains(r.Stdout, joined) || !strings.Contains(r.Stdout, left) {
				t.Fatalf("the notices are not in the played recording: %s", r)
			}
		})
	}
}

// TestKubeJoinThroughPeer: two proxies with peering (two all-in-one
// instances on one PostgreSQL database); the kube agent in front of the
// real kube-apiserver is connected to proxy A, where the owner's real
// kubectl exec -it session runs and is recorded. Users logged in through
// proxy B join it with warden join: B forwards the join to A, which
// decides it again (a joiner allowed to observe only is refused as a
// peer, with A's reason), audits it with via_proxy, and relays the
// session: the peer's command runs in the owner's shell, both see its
// output, the owner's terminal is told of the join and the leave. A lock
// on the peer ends their participation (with the lock's message) and not
// the session; a session ID that lives nowhere is not found.
func TestKubeJoinThroughPeer(t *testing.T) {
	a, b := peered(t, true)
	e := StartKubeOn(t, a, kubeRoles+`---
kind: role
metadata: {name: watch-only}
spec:
  allow:
    rules:
      - {resources: [session], verbs: [list]}
    join_sessions:
      - {roles: [kube-member], modes: [observer]}
`)
	admin := t.TempDir()
	owner := a.AddUser("kowner", []string{"kube-member"}, nil)
	kubeconfig := e.KubeLogin(a.Login(owner), "test-k8s")
	peerHome := b.Login(a.AddUser("kpeer", []string{"session-lister", "kube-viewer"}, nil))
	watcherHome := b.Login(a.AddUser("kwatcher", []string{"watch-only", "kube-viewer"}, nil))

	cmd, term, out := kubectlTTY(t, nil, kubeconfig, "exec", "-it", "shell", "-n", "default", "--", "sh")
	testkit.WaitFor(t, "the owner's shell", func() bool {
		_, _ = term.Write([]byte("echo up-$((6*7))\n"))
		return strings.Contains(out.String(), "up-42")
	})
	id := liveKubeSession(t, a, admin, "kowner", "kube-exec")

	if r := b.Warden(peerHome, nil, "join", "0000dead-beef-0000-0000-000000000000"); r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, "no") {
		t.Fatalf("join of a session that is nowhere: %s", r)
	}
	if r := b.Warden(watcherHome, nil, "join", id, "--mode", "peer"); r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, "as peer (join_sessions)") {
		t.Fatalf("a peer join through B by one allowed to observe only: %s", r)
	}
	// An observer through B (plain HTTPS): sees the output, and the end.
	observer := startBackground(t, WardenBinary, "--data-dir", b.DataDir, "--home", watcherHome, "join", id)
	testkit.WaitFor(t, "the observer's join notice", func() bool {
		return strings.Contains(out.String(), "warden: kwatcher joined this session as observer\r\n")
	})
	p := startPeerJoin(t, b, peerHome, id)
	joined := "warden: kpeer joined this session as peer\r\n"
	testkit.WaitFor(t, "the join notice on the owner's terminal", func() bool { return strings.Contains(out.String(), joined) }, p.out)
	if _, err := io.WriteString(p.in, "echo through-b-$((6*7))\n"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the peer's command (through B) in the owner's shell", func() bool {
		return strings.Contains(out.String(), "through-b-42") && strings.Contains(p.out.String(), "through-b-42")
	}, p.out)
	observer.waitFor(t, "through-b-42")
	testkit.WaitFor(t, "the peer in the participants", func() bool {
		return strings.Contains(a.Warden(admin, nil, "sessions", "ls").Stdout, "kowner,kwatcher,kpeer")
	})
	evs, err := a.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.SessionJoin})
	if err != nil {
		t.Fatal(err)
	}
	var ok, refused int
	for _, ev := range evs {
		via, _ := ev.Fields["via_proxy"].(string)
		switch {
		case ev.Success && ev.User == "kpeer" && fmt.Sprint(ev.Fields["mode"]) == "peer" && via != "":
			ok++
		case ev.Success && ev.User == "kwatcher" && fmt.Sprint(ev.Fields["mode"]) == "observer" && via != "":
		case !ev.Success && ev.User == "kwatcher" && via != "":
			refused++
		default:
			t.Fatalf("session.join: %+v", ev)
		}
	}
	if ok != 1 || refused != 1 {
		t.Fatalf("session.join through B: %d joined, %d refused: %+v", ok, refused, evs)
	}

	// A lock on the peer ends their part only, with its message.
	if r := a.Warden(admin, nil, "lock", "--user", "kpeer", "--message", "pairing through b over", "--ttl", "1m"); r.Code != 0 {
		t.Fatalf("lock the peer: %s", r)
	}
	p.waitEnd(t)
	if !strings.Contains(p.out.String(), "pairing through b over") {
		t.Fatalf("the locked peer's output: %s", p.out.String())
	}
	testkit.WaitFor(t, "session.leave of the locked peer", func() bool {
		evs, err := a.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.SessionLeave})
		return err == nil && len(evs) == 1 && strings.Contains(fmt.Sprint(evs[0].Fields["reason"]), "pairing through b over")
	})
	select {
	case code := <-observer.done:
		t.Fatalf("the observer's view ended with the peer's lock (exit %d): %s%s", code, observer.out.String(), observer.err.String())
	default:
	}
	testkit.WaitFor(t, "the leave notice on the owner's terminal", func() bool {
		return strings.Contains(out.String(), "warden: kpeer (peer) left this session\r\n")
	})
	testkit.WaitFor(t, "the session after the peer's lock", func() bool {
		_, _ = term.Write([]byte("echo after-$((6*7))\n"))
		return strings.Contains(out.String(), "after-42")
	})
	// The web UI's join at B: what its live page calls, in B's process,
	// with the browser's address (no port).
	wp, err := b.Proc.Proxy().JoinKube(patience.Context(t), auth.Caller{Kind: auth.KindUser, User: "kwatcher",
		Roles: []string{"watch-only", "kube-viewer"}, Issued: time.Now()}, "127.0.0.1", id, "observer")
	if err != nil {
		t.Fatalf("the web UI's join at B: %v", err)
	}
	var web strings.Builder
	for !strings.Contains(web.String(), "web-9") {
		_, _ = term.Write([]byte("echo web-$((3*3))\n"))
		b, err := wp.Next(patience.Context(t))
		if err != nil {
			t.Fatalf("the web UI's view through B: %v (it got %q)", err, web.String())
		}
		web.Write(b)
	}
	wp.Leave()
	_, _ = term.Write([]byte("exit\n"))
	waitExit(t, cmd, out)
	// The session's end reaches the observer through B.
	if code := observer.wait(t); code != 0 || !strings.Contains(observer.out.String()+observer.err.String(), "the session ended") {
		t.Fatalf("the observer through B at the session's end: exit %d: %s%s", code, observer.out.String(), observer.err.String())
	}
}
