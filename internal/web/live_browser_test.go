//go:build integration

package web_test

import (
	"context"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
)

const liveRoles = `
kind: role
metadata: {name: dev}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: dev}
---
kind: role
metadata: {name: mentor}
spec:
  allow:
    node_labels: {'*': '*'}
    join_sessions:
      - {roles: [dev], modes: [observer]}
    rules:
      - {resources: [session], verbs: [list]}
`

// TestBrowserLiveSessions: a session opened with the real OpenSSH client
// shows up on the live sessions page; a mentor observes it in the browser
// and sees its output from then on, cannot type into it, and is listed as
// a participant.
func TestBrowserLiveSessions(t *testing.T) {
	c, erin, mentor := liveCluster(t)

	home := c.Login(erin)
	cmd := exec.Command("ssh", "-F", c.SSHConfig(home), "-o", "BatchMode=yes", "-tt", "erin@node1")
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	io.WriteString(stdin, "echo READY-$((2+3))\n")
	waitOutput(t, &out, "READY-5")

	b := newBrowser(t, "https://"+c.ProxyAddr())
	b.open("/web/login")
	b.signin(mentor)
	waitSession(t, c, "erin")
	b.open("/web/sessions")
	if got := b.text(`#live-sessions tr.live[data-user="erin"] .node`); got != "node1" {
		t.Fatalf("erin's session is on %q", got)
	}
	b.screenshot("sessions")
	b.submit(`#live-sessions tr.live[data-user="erin"] a.observe`)
	b.waitJS(`document.getElementById("term-status") && document.getElementById("term-status").textContent === "connected"`)
	// What erin's shell prints from now on reaches the observer.
	b.waitJS(`document.querySelector(".xterm-rows") !== null`)
	waitParticipant(t, c, "mona")
	io.WriteString(stdin, "echo OBSERVED-$((6*7))\n")
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("OBSERVED-42")`)
	// An observer's keys go nowhere.
	b.typeText("echo TYPED-BY-OBSERVER")
	b.pressEnter()
	io.WriteString(stdin, "echo AFTER-$((1+1))\n")
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("AFTER-2")`)
	if strings.Contains(out.String(), "TYPED-BY-OBSERVER") {
		t.Fatal("an observer typed into the session")
	}
	b.screenshot("session-observe")
	io.WriteString(stdin, "exit\n")
	b.waitJS(`document.getElementById("terminal").dataset.closed === "1"`)
}

// waitOutput waits until out holds want.
func waitOutput(t *testing.T, out *syncbuf.Buffer, want string) {
	t.Helper()
	deadline := patience.Deadline(t)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output:\n%s", want, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitParticipant waits until a live session lists user as a participant.
func waitParticipant(t *testing.T, c *clustertest.Cluster, user string) {
	t.Helper()
	deadline := patience.Deadline(t)
	for {
		list, err := c.Admin.ListSessions(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			if slices.Contains(s.Participants, user) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never joined: %+v", user, list)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitSession waits until auth lists a live session of user.
func waitSession(t *testing.T, c *clustertest.Cluster, user string) {
	t.Helper()
	deadline := patience.Deadline(t)
	for {
		list, err := c.Admin.ListSessions(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			if s.User == user {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live session of %s: %+v", user, list)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// liveCluster starts a cluster with liveRoles and a node labelled env=dev,
// with erin (role dev, OS login erin) and mona (role mentor).
func liveCluster(t *testing.T) (c *clustertest.Cluster, erin, mentor *clustertest.User) {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("no OpenSSH client (apt-get install openssh-client)")
	}
	needWardenBinary(t)
	c = clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(liveRoles)
	clustertest.EnsureOSUser(t, "erin")
	return c, c.AddUser("erin", []string{"dev"}, []string{"erin"}), c.AddUser("mona", []string{"mentor"}, nil)
}
