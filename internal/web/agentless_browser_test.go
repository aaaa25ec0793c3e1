//go:build integration

package web_test

import (
	"testing"

	"github.com/warden-sh/warden/internal/clustertest"
)

// TestBrowserAgentlessTerminal: the web terminal reaches an agentless
// server (a real sshd that trusts the cluster's user CA, no Warden
// software) through the proxy, as it reaches an agent node; the session
// is recorded at the proxy and plays in the web player.
func TestBrowserAgentlessTerminal(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NoNode: true})
	c.ApplyRoles(roles)
	clustertest.EnsureOSUser(t, "gina")
	// sshd without PAM refuses accounts with a locked password.
	if r := clustertest.Run(t, nil, "usermod", "-p", "*", "gina"); r.Code != 0 {
		t.Fatalf("usermod: %s", r)
	}
	clustertest.StartAgentless(t, c, "legacy1", "env=dev")
	gina := c.AddUser("gina", []string{"dev", "auditor"}, []string{"gina"})
	b := newBrowser(t, "https://"+c.ProxyAddr())
	b.open("/web/login")
	b.signin(gina)
	b.open("/web/servers/legacy1/terminal?login=gina")
	b.waitJS(`document.getElementById("term-status").textContent === "connected"`)
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("$")`)
	b.typeText("echo agentless-web-$((6*7)); whoami")
	b.pressEnter()
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("agentless-web-42")`)
	b.screenshot("agentless-terminal")
	b.typeText("exit")
	b.pressEnter()
	b.waitJS(`document.getElementById("terminal").dataset.closed === "1"`)

	rec := waitRecording(t, c, "gina")
	if rec.Node != "legacy1" || rec.Login != "gina" {
		t.Fatalf("recording %+v: want gina on legacy1", rec)
	}
	b.open("/web/recordings?q=echo+agentless-web")
	b.submit("#rec-matches .match a.play-at")
	b.waitJS(`document.querySelector(".xterm-rows") && document.querySelector(".xterm-rows").textContent.includes("agentless-web-42")`)
	b.waitJS(`document.getElementById("player").dataset.state === "ended"`)
	b.screenshot("agentless-player")
}
