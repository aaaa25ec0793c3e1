package auth_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/wire"
)

// TestSSOResultNeedsCallbackCode: whoever began an SSO login holds its id
// and result token. If they send the IdP's link to someone else (a
// victim) who signs in there, the victim's browser comes back to the
// victim's own loopback with a one-time code; without it the outcome (the
// victim's certificates) is refused to the one who began, and the refusal
// is audited. With the code it is handed over, once.
func TestSSOResultNeedsCallbackCode(t *testing.T) {
	f := newSAMLFixture(t)
	ctx := context.Background()
	l := f.start("alice") // begun by the attacker, alice signs in at the IdP
	next, err := f.a.SAMLACS(ctx, samlConnectorName, l.samlResponse, l.relay, "192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	code := callbackCode(t, next, "http://127.0.0.1:1/callback", l.begin.ID)
	other, err := identity.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	for name, req := range map[string]wire.SSOResultRequest{
		"no code":                   {ID: l.begin.ID, ResultToken: l.begin.ResultToken},
		"wrong code":                {ID: l.begin.ID, ResultToken: l.begin.ResultToken, Code: other},
		"the result token as code":  {ID: l.begin.ID, ResultToken: l.begin.ResultToken, Code: l.begin.ResultToken},
		"right code, wrong token":   {ID: l.begin.ID, ResultToken: other, Code: code},
		"right code, no token":      {ID: l.begin.ID, Code: code},
		"oversized code":            {ID: l.begin.ID, ResultToken: l.begin.ResultToken, Code: strings.Repeat("a", 4096)},
		"code of another sign-in":   {ID: strings.Repeat("0", 2*identity.TokenBytes), ResultToken: l.begin.ResultToken, Code: code},
		"id not hex":                {ID: strings.Repeat("z", 2*identity.TokenBytes), ResultToken: l.begin.ResultToken, Code: code},
		"the login id as the token": {ID: l.begin.ID, ResultToken: l.begin.ID, Code: code},
	} {
		req.RemoteAddr = "198.51.100.9"
		if resp, err := f.a.ResultOIDC(ctx, req); err == nil {
			t.Fatalf("%s: got the certificates of %q", name, resp.User)
		}
	}
	evs, err := f.a.SearchAudit(ctx, auth.AdminCaller(), audit.Query{Type: audit.UserLogin})
	if err != nil {
		t.Fatal(err)
	}
	var noCode, wrongToken bool
	for _, e := range evs {
		if e.Success || e.Fields["stage"] != "result" {
			continue
		}
		if e.User != "alice" || e.Fields["method"] != "saml" || e.Fields["connector"] != samlConnectorName || e.RemoteAddr != "198.51.100.9" {
			t.Errorf("audit of a refused result: %+v", e)
		}
		noCode = noCode || e.Error == "result fetched without the callback code"
		wrongToken = wrongToken || e.Error == "result fetched with a wrong result token"
		for _, secret := range []string{code, l.begin.ResultToken, other} {
			if strings.Contains(fmt.Sprint(e), secret) {
				t.Errorf("a secret in the audit: %+v", e)
			}
		}
	}
	if !noCode || !wrongToken {
		t.Fatalf("the refused results are not audited: %+v", evs)
	}
	// The browser that signed in brought the code: its CLI gets alice's
	// certificates, once.
	resp, err := f.a.ResultOIDC(ctx, wire.SSOResultRequest{ID: l.begin.ID, ResultToken: l.begin.ResultToken, Code: code})
	if err != nil || resp.User != "alice" || resp.SSHCert == "" {
		t.Fatalf("with the code: %+v %v", resp, err)
	}
	if _, err := f.a.ResultOIDC(ctx, wire.SSOResultRequest{ID: l.begin.ID, ResultToken: l.begin.ResultToken, Code: code}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("the result fetched twice: %v", err)
	}
}

// TestSSOBeginLoopbackOnly: the browser that signs in is sent to the
// client's callback with the code, so a CLI's callback must be this
// machine's loopback listener, and a web sign-in's a path on the proxy.
func TestSSOBeginLoopbackOnly(t *testing.T) {
	f := newSAMLFixture(t)
	ctx := context.Background()
	for _, redirect := range []string{
		"", "https://127.0.0.1:1/callback", "http://evil.example/callback", "http://127.0.0.1.evil.example/callback",
		"http://10.0.0.1:1/callback", "http://user@127.0.0.1:1/callback", "http://evil.example@127.0.0.1:1/callback",
		"http://127.0.0.1:1/callback?x=1", "http://127.0.0.1:1/callback?", "http://127.0.0.1:1/callback#x",
		"http://127.0.0.1:1/" + strings.Repeat("a", 300), "/web/login/sso/done", "javascript:alert(1)",
	} {
		if _, err := f.a.BeginSSO(ctx, wire.SSOBeginRequest{Connector: samlConnectorName, PublicKey: pubKey(t), ClientRedirect: redirect}); !errors.Is(err, auth.ErrBadRequest) {
			t.Errorf("a CLI login returning to %q: %v", redirect, err)
		}
	}
	for _, redirect := range []string{
		"https://evil.example/web/x", "//evil.example/web/x", "/api/x", "/web/x?next=/y", "/web/x#y", "http://127.0.0.1:1/web/x",
	} {
		if _, err := f.a.BeginSSO(ctx, wire.SSOBeginRequest{Connector: samlConnectorName, PublicKey: pubKey(t), ClientRedirect: redirect, Web: true}); !errors.Is(err, auth.ErrBadRequest) {
			t.Errorf("a web login returning to %q: %v", redirect, err)
		}
	}
	for _, redirect := range []string{"http://127.0.0.1:1/callback", "http://[::1]:1/callback", "http://localhost:1/callback"} {
		if _, err := f.a.BeginSSO(ctx, wire.SSOBeginRequest{Connector: samlConnectorName, PublicKey: pubKey(t), ClientRedirect: redirect}); err != nil {
			t.Errorf("a CLI login returning to %q: %v", redirect, err)
		}
	}
}
