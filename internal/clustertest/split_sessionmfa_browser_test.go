//go:build integration

package clustertest

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/testkit"
)

// tamperPasskeyJS makes the page's next passkey answers wrong: the
// assertion the authenticator signed, with one bit of its signature
// flipped (what a forged or replayed-and-altered answer looks like to
// auth).
const tamperPasskeyJS = `(() => {
  const get = navigator.credentials.get.bind(navigator.credentials);
  window.__origGet = get;
  navigator.credentials.get = async (o) => {
    const c = await get(o);
    const sig = new Uint8Array(c.response.signature.slice(0));
    sig[sig.length - 1] ^= 1;
    return {id: c.id, rawId: c.rawId, type: c.type, getClientExtensionResults: () => c.getClientExtensionResults(),
      response: {clientDataJSON: c.response.clientDataJSON, authenticatorData: c.response.authenticatorData,
        signature: sig.buffer, userHandle: c.response.userHandle}};
  };
  return "tampered";
})()`

// TestSplitProxyWebSessionMFAPasskey: a role with per-session MFA, and
// the web terminal of a proxy running apart from auth, in a real browser
// (headless Chromium with its virtual authenticator): the user registers
// a passkey on the proxy's Security page; the terminal page asks for the
// check and, unanswered, opens no shell; a wrong answer (the passkey's
// signature altered) is refused by auth, the page says so and no shell
// opens; the passkey's real answer opens the shell (auth issued the
// per-session certificate and audited the passkey's check).
func TestSplitProxyWebSessionMFAPasskey(t *testing.T) {
	EnsureOSUser(t, osLogin)
	s, authA, _, b := splitPasskeyLabWith(t, "", func(s *splitCluster, authA *splitAuth, proxyA *splitProxyProc) {
		s.StartNode("node-a", authA, proxyA)
	})
	s.apply(authA, "apply roles", sessionMFARole)
	u := s.AddUser(authA, "webmfapk", []string{"prod"}, []string{osLogin})
	b.signInWithPassword(u)
	b.waitJS(`location.pathname === "/web/servers"`)
	// Registered; a fetch Chromium aborted (the machine's network
	// changed under it: "Failed to fetch") is tried again.
	testkit.WaitFor(t, "the passkey registered", func() bool {
		b.open("/web/security?add=laptop")
		b.do(chromedp.Click(chromedp.CSS("#passkey-add")))
		var done bool
		testkit.WaitFor(t, "the registration's outcome", func() bool {
			done = strings.HasSuffix(b.eval(`location.pathname + location.search`), "/web/security?done=added")
			return done || b.eval(`String(!document.getElementById("passkey-error").hidden)`) == "true"
		})
		if !done {
			if msg := b.text("#passkey-error"); msg != "Failed to fetch" {
				t.Fatalf("registering a passkey: %q", msg)
			}
			t.Logf("the registration's fetch was aborted: trying again")
		}
		return done
	})
	testkit.WaitFor(t, "node-a on the servers page", func() bool {
		b.open("/web/servers")
		return strings.Contains(b.text("body"), "node-a")
	})

	term := "/web/servers/node-a/terminal?login=" + osLogin
	b.open(term)
	b.waitJS(`!document.getElementById("mfa-form").hidden && !document.getElementById("mfa-webauthn").hidden`)
	if got := b.text("#mfa-label"); !strings.Contains(got, osLogin+"@node-a requires an MFA check") {
		t.Fatalf("MFA form label %q", got)
	}
	// Unanswered: no shell. (The check is asked before any session
	// exists: the status stays on the check.)
	if st := b.text("#term-status"); st == "connected" {
		t.Fatalf("the terminal is %q before the MFA check", st)
	}

	// A wrong answer: auth refuses it; the form says so; no shell.
	if got := b.eval(tamperPasskeyJS); got != "tampered" {
		t.Fatalf("tamper: %s", got)
	}
	b.do(chromedp.Click(chromedp.CSS("#mfa-passkey")))
	b.waitJS(`!document.getElementById("mfa-error").hidden || document.getElementById("terminal").dataset.closed === "1" || ` +
		`document.getElementById("term-status").textContent === "connected"`)
	refusal := b.text("#mfa-error")
	if st := b.text("#term-status"); st == "connected" || strings.Contains(b.text(".xterm-rows"), "$") {
		t.Fatalf("a wrong passkey answer opened the terminal (status %q, error %q)", st, refusal)
	}
	if b.eval(`String(document.getElementById("terminal").dataset.closed === "1")`) == "true" {
		refusal = b.text("#term-status")
	}
	if refusal == "" {
		t.Fatal("a wrong passkey answer: no refusal shown")
	}
	t.Logf("wrong passkey answer refused: %q", refusal)
	testkit.WaitFor(t, "the refused passkey check in the audit log", func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.MFAVerify, User: u.Name, Limit: 50})
		for _, ev := range evs {
			if err == nil && !ev.Success && ev.Fields["purpose"] == "session" {
				return true
			}
		}
		return false
	})

	// The passkey's own answer, on a fresh page: the shell runs.
	b.open(term)
	b.waitJS(`!document.getElementById("mfa-form").hidden && !document.getElementById("mfa-webauthn").hidden`)
	b.do(chromedp.Click(chromedp.CSS("#mfa-passkey")))
	b.waitJS(`document.getElementById("term-status").textContent === "connected" || !document.getElementById("mfa-error").hidden`)
	if st := b.text("#term-status"); st != "connected" {
		t.Fatalf("the passkey's answer: status %q, error %q", st, b.text("#mfa-error"))
	}
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("$")`)
	b.typeLine("echo passkey-split-$((6*7))")
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("passkey-split-42")`)
	testkit.WaitFor(t, "the passkey's session check and certificate in the audit log", func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.MFAVerify, User: u.Name, Limit: 50})
		ok := false
		for _, ev := range evs {
			if err == nil && ev.Success && ev.Fields["purpose"] == "session" && ev.Fields["kind"] == "webauthn" {
				ok = true
			}
		}
		if !ok {
			return false
		}
		evs, err = authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.CertIssued, User: u.Name, Limit: 50})
		for _, ev := range evs {
			if err == nil && ev.Fields["cert_type"] == "session_mfa" {
				return true
			}
		}
		return false
	})
}
