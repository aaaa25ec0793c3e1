//go:build integration

package web_test

import (
	"context"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/web"
)

// sessionMFARoles: the dev nodes need an MFA check for each session.
const sessionMFARoles = `
kind: role
metadata: {name: dev-mfa}
spec:
  options: {require_session_mfa: true}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: dev}
`

// auditEvents returns the events of type typ of user whose fields match.
func auditEvents(t *testing.T, c *clustertest.Cluster, typ, user string, match func(audit.Event) bool) []audit.Event {
	t.Helper()
	evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: typ, User: user})
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Event
	for _, ev := range evs {
		if match == nil || match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// TestTerminalSessionMFA: a web terminal to a node that requires an MFA
// check for each session asks for it over its socket before opening: keys
// sent before go nowhere, a wrong code is refused with the reason (and
// another may follow), the right one opens the shell, audited as a
// per-session check with the device. Three wrong answers end the
// terminal with the reason. A terminal opened without the check (the web
// UI's own check skipped) is refused by the proxy and the node.
func TestTerminalSessionMFA(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(sessionMFARoles)
	carol := c.AddUser("carol", []string{"dev-mfa"}, []string{"carol"})
	clustertest.EnsureOSUser(t, "carol")
	a := webSignin(t, c, carol, "")
	const path = "/web/servers/node1/ws?login=carol"

	tc := a.openTerm(path, "", 0)
	testkit.WaitFor(t, "the MFA prompt", func() bool { tc.mu.Lock(); defer tc.mu.Unlock(); return tc.mfa || tc.closed })
	tc.send("echo sneaked-$((6*7))\r")
	tc.sendJSON(map[string]string{"otp": "000000"})
	testkit.WaitFor(t, "the wrong code's refusal", func() bool { tc.mu.Lock(); defer tc.mu.Unlock(); return len(tc.mfaErrors) > 0 || tc.closed })
	tc.mu.Lock()
	errs, tok := tc.mfaErrors, tc.token
	tc.mu.Unlock()
	if len(errs) != 1 || !strings.Contains(errs[0], "invalid MFA code") || tok != "" {
		t.Fatalf("wrong code: errors %q, token %q", errs, tok)
	}
	tc.sendJSON(map[string]string{"otp": carol.NextOTP(t)})
	tc.waitToken()
	tc.send("echo in-$((6*7))\r")
	tc.waitOutput("in-42")
	if out, _, _, _, _ := tc.state(); strings.Contains(out, "sneaked-42") {
		t.Fatal("keys sent before the MFA check reached the shell")
	}
	verified := auditEvents(t, c, audit.MFAVerify, "carol", func(ev audit.Event) bool { return ev.Success && ev.Fields["purpose"] == "session" })
	if len(verified) != 1 || verified[0].Fields["mfa_device"] == "" || verified[0].Fields["kind"] != "totp" {
		t.Fatalf("mfa.verify events %+v", verified)
	}
	issued := auditEvents(t, c, audit.CertIssued, "carol", func(ev audit.Event) bool { return ev.Fields["cert_type"] == "session_mfa" })
	if len(issued) != 1 || issued[0].Fields["mfa_device"] != verified[0].Fields["mfa_device"] {
		t.Fatalf("cert.issued events %+v", issued)
	}

	// The session says the check was made, and with which device.
	testkit.WaitFor(t, "session.start with mfa_verified", func() bool {
		starts := auditEvents(t, c, audit.SessionStart, "carol", nil)
		return len(starts) == 1 && starts[0].Fields["mfa_verified"] == true && starts[0].Fields["mfa_device"] == verified[0].Fields["mfa_device"]
	})

	// Without the check: the proxy refuses the browser session's own
	// certificate, with the reason.
	restore := web.SkipSessionMFA()
	if r := a.openTerm(path, "", 0).refused(); !strings.Contains(r, "requires an MFA check for each session") {
		restore()
		t.Fatalf("a terminal without the check: %q", r)
	}
	restore()

	// Three wrong answers end it.
	tc = a.openTerm(path, "", 0)
	testkit.WaitFor(t, "the MFA prompt", func() bool { tc.mu.Lock(); defer tc.mu.Unlock(); return tc.mfa || tc.closed })
	for range 3 {
		tc.sendJSON(map[string]string{"otp": "000000"})
	}
	if r := tc.refused(); !strings.Contains(r, `MFA check for node "node1"`) || !strings.Contains(r, "invalid MFA code") {
		t.Fatalf("after three wrong codes: %q", r)
	}
}
