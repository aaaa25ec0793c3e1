//go:build integration

package web_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// kubeWebRoles: kube-dev execs into pods; kube-mentor may see the pods of
// default and join kube-dev's sessions.
const kubeWebRoles = `
kind: role
metadata: {name: kube-dev}
spec:
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: ["system:masters"]
---
kind: role
metadata: {name: kube-mentor}
spec:
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: [viewers]
    kubernetes_resources:
      - {kind: pods, namespace: default, verbs: [get, list, watch]}
    rules:
      - {resources: [session], verbs: [list]}
    join_sessions:
      - {roles: [kube-dev], modes: [observer, peer]}
`

// kubeShell is the real kubectl exec -it into the pod default/shell (the
// kubelet stand-in runs sh as a local process), on a pty.
type kubeShell struct {
	cmd  *exec.Cmd
	term *os.File
	out  *syncbuf.Buffer
	done chan struct{}
}

func startKubeShell(t *testing.T, kubeconfig string) *kubeShell {
	t.Helper()
	cmd := exec.Command("kubectl", "--kubeconfig", kubeconfig, "exec", "-it", "shell", "-n", "default", "--", "sh")
	// A terminal of a real size (a pty starts at 0x0, which the
	// recording would keep as its size).
	term, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 100, Rows: 30})
	if err != nil {
		t.Fatal(err)
	}
	k := &kubeShell{cmd: cmd, term: term, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	go func() { _, _ = io.Copy(k.out, term); close(k.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		term.Close()
	})
	testkit.WaitFor(t, "the shell in the pod", func() bool {
		_, _ = io.WriteString(term, "echo shell-$((6*7))-up\n")
		return strings.Contains(k.out.String(), "shell-42-up")
	})
	return k
}

func (k *kubeShell) exit(t *testing.T) {
	t.Helper()
	_, _ = io.WriteString(k.term, "exit\n")
	select {
	case <-k.done:
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatalf("kubectl exec did not end:\n%s", k.out.String())
	}
}

// TestBrowserKubeRecordingPlayer: a real `kubectl exec -it` session
// through Warden is listed on the recordings page and plays in the web
// player to its end, showing what the shell printed.
func TestBrowserKubeRecordingPlayer(t *testing.T) {
	needWardenBinary(t)
	e := clustertest.StartKube(t, kubeWebRoles)
	c := e.C
	kubeconfig := e.KubeLogin(c.Login(c.AddUser("kdev", []string{"kube-dev"}, nil)), "test-k8s")
	sh := startKubeShell(t, kubeconfig)
	_, _ = io.WriteString(sh.term, "echo PLAYED-IN-POD-$((6*7))\n")
	testkit.WaitFor(t, "the command's output", func() bool { return strings.Contains(sh.out.String(), "PLAYED-IN-POD-42") })
	sh.exit(t)
	rec := waitRecording(t, c, "kdev")
	if rec.Login != "default/shell" {
		t.Fatalf("the recording's login is %q, want the pod default/shell", rec.Login)
	}

	b := newBrowser(t, "https://"+c.ProxyAddr())
	b.open("/web/login")
	b.signin(c.AddUser("audrey", []string{"auditor"}, nil))
	b.open("/web/recordings")
	b.submit(`a.play[href="/web/recordings/` + rec.SessionID + `/play"]`)
	// What the player reads: the index and a range of the cast.
	for _, path := range []string{"index", "cast"} {
		got := eval[string](b, fmt.Sprintf(`(() => { const x = new XMLHttpRequest();
			x.open("GET", "/web/recordings/%s/%s", false); x.setRequestHeader("Range", "bytes=0-1000"); x.send();
			return x.status + " " + x.responseText.slice(0, 300); })()`, rec.SessionID, path))
		if !strings.HasPrefix(got, "200 ") && !strings.HasPrefix(got, "206 ") {
			t.Fatalf("the player's read of the recording's %s: %s", path, got)
		}
	}
	// It opens paused at the start: play it, fast.
	b.waitJS(`document.getElementById("player").dataset.state === "paused"`)
	eval[bool](b, `(document.getElementById("speed").value = "8") === "8"`)
	eval[bool](b, `(document.getElementById("play").click(), true)`)
	b.waitJS(`document.querySelector(".xterm-rows") && document.querySelector(".xterm-rows").textContent.includes("PLAYED-IN-POD-42")`)
	b.waitJS(`document.getElementById("player").dataset.state === "ended"`)
	b.screenshot("player-kube")
	if got := eval[string](b, `document.querySelector(".xterm-rows").textContent`); !strings.Contains(got, "echo PLAYED-IN-POD-$((6*7))") {
		t.Fatalf("the player's screen does not show the typed command: %q", got)
	}
}

// TestBrowserKubeLiveJoin: a live `kubectl exec -it` session is on the
// live sessions page; a mentor observes it from there and sees what the
// owner's shell prints, cannot type into it, is listed as a participant;
// then joins it as a peer and types a command the owner's shell runs.
func TestBrowserKubeLiveJoin(t *testing.T) {
	needWardenBinary(t)
	e := clustertest.StartKube(t, kubeWebRoles)
	c := e.C
	kubeconfig := e.KubeLogin(c.Login(c.AddUser("kdev", []string{"kube-dev"}, nil)), "test-k8s")
	mentor := c.AddUser("kmona", []string{"kube-mentor"}, nil)
	sh := startKubeShell(t, kubeconfig)
	waitSession(t, c, "kdev")

	b := newBrowser(t, "https://"+c.ProxyAddr())
	b.open("/web/login")
	b.signin(mentor)
	b.open("/web/sessions")
	if got := b.text(`#live-sessions tr.live[data-user="kdev"] .login`); got != "default/shell" {
		t.Fatalf("the kube session's login on the live page is %q", got)
	}
	b.screenshot("sessions-kube")
	b.submit(`#live-sessions tr.live[data-user="kdev"] a.observe`)
	b.waitJS(`document.getElementById("term-status") && document.getElementById("term-status").textContent === "connected"`)
	b.waitJS(`document.querySelector(".xterm-rows") !== null`)
	waitParticipant(t, c, "kmona")
	_, _ = io.WriteString(sh.term, "echo OBSERVED-IN-POD-$((6*7))\n")
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("OBSERVED-IN-POD-42")`)
	// An observer's keys go nowhere.
	b.typeText("echo TYPED-BY-OBSERVER")
	b.pressEnter()
	_, _ = io.WriteString(sh.term, "echo AFTER-$((1+1))\n")
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("AFTER-2")`)
	if strings.Contains(sh.out.String(), "TYPED-BY-OBSERVER") {
		t.Fatal("an observer typed into the kube session")
	}
	b.screenshot("session-observe-kube")

	// As a peer: the mentor's keys reach the shell.
	b.open("/web/sessions")
	b.submit(`#live-sessions tr.live[data-user="kdev"] a.peer`)
	b.waitJS(`document.getElementById("term-status") && document.getElementById("term-status").textContent === "connected"`)
	testkit.WaitFor(t, "the peer's command in the owner's shell", func() bool {
		if strings.Contains(sh.out.String(), "PEER-IN-POD-42") {
			return true
		}
		b.typeText("echo PEER-IN-POD-$((6*7))")
		b.pressEnter()
		return false
	})
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("PEER-IN-POD-42")`)
	sh.exit(t)
	b.waitJS(`document.getElementById("terminal").dataset.closed === "1"`)
}
