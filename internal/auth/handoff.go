package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// Browser hand-offs (`warden login --sso`, `--passkey`, the MFA check
// through a browser, and the web UI's single sign-on) end the same way:
// the browser that completed the sign-in is sent to the client's
// callback with the login id and a fresh one-time code (only its hash is
// kept), and the client fetches the outcome with its result token AND
// that code. Whoever began a login and sent its link to someone else
// holds the token but never sees the code, which goes only to the
// signer's machine (or browser): the signer's certificates stay theirs.

// maxClientRedirect bounds the client's callback URL.
const maxClientRedirect = 256

// handoffResult is a hand-off's outcome, for the client that began it.
type handoffResult struct {
	ResultHash string              `json:"result_hash"`
	CodeHash   string              `json:"code_hash"`
	Login      *wire.LoginResponse `json:"login,omitempty"`
	// MFAToken is the outcome of an MFA hand-off (a ceremonyMFAToken).
	MFAToken string `json:"mfa_token,omitempty"`
	Error    string `json:"error,omitempty"`
	// Method, Connector and User name the login or MFA check, for the
	// audit of a refused fetch.
	Method    string `json:"method,omitempty"`
	Connector string `json:"connector,omitempty"`
	User      string `json:"user,omitempty"`
}

// checkLoopbackRedirect checks a CLI's callback: plain http on a loopback
// address (the browser that signs in goes there, so it must be that
// machine's own listener, never a host someone else names), no query,
// fragment or user info.
func checkLoopbackRedirect(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || len(raw) > maxClientRedirect || u.Scheme != "http" || !wire.IsLoopbackHost(u.Hostname()) ||
		u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" || strings.ContainsAny(raw, "#?\\") {
		return badRequest("client_redirect must be an http URL on a loopback address, without a query")
	}
	return nil
}

// putHandoffResult keeps a hand-off's outcome under prefix+id with a new
// callback code, and returns where to send the browser: redirect, with
// the login id and the code.
func (s *Server) putHandoffResult(ctx context.Context, prefix, id, redirect string, res handoffResult) (string, error) {
	code, err := identity.NewToken()
	if err != nil {
		return "", err
	}
	res.CodeHash = identity.HashToken(code)
	if err := s.createJSON(ctx, prefix+id, res, s.now().Add(resultTTL)); err != nil {
		return "", err
	}
	return redirect + "?id=" + url.QueryEscape(id) + "&code=" + url.QueryEscape(code), nil
}

// takeHandoffResult fetches and deletes a hand-off's outcome, for the
// holder of both its result token and its callback code. A refusal is
// audited: a right token with a wrong or no code is whoever began the
// login asking for a sign-in that came back to another browser.
func (s *Server) takeHandoffResult(ctx context.Context, prefix, id, token, code, remote string) (*handoffResult, error) {
	if len(id) != 2*identity.TokenBytes || strings.Trim(id, "0123456789abcdef") != "" || len(token) > 128 || len(code) > 128 {
		return nil, badRequest("bad login id")
	}
	key := prefix + id
	var res handoffResult
	if err := s.getJSON(ctx, key, &res); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("%w: no outcome for this sign-in (expired or already fetched)", ErrUnauthenticated)
		}
		return nil, err
	}
	tokenOK := subtle.ConstantTimeCompare([]byte(identity.HashToken(token)), []byte(res.ResultHash)) == 1
	codeOK := subtle.ConstantTimeCompare([]byte(identity.HashToken(code)), []byte(res.CodeHash)) == 1
	if !tokenOK || !codeOK {
		reason := "result fetched with a wrong result token"
		if tokenOK {
			reason = "result fetched without the callback code"
		}
		user := res.User
		if res.Login != nil {
			user = res.Login.User
		}
		ev := audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginFailure, User: user, RemoteAddr: remote, Success: false, Error: reason,
			Fields: map[string]any{"method": res.Method, "stage": "result"}}
		if res.Connector != "" {
			ev.Fields["connector"] = res.Connector
		}
		if res.Method == "mfa" {
			// An MFA check through the browser, not a sign-in.
			ev.Event, ev.Code = audit.MFAVerify, ""
			ev.Fields = map[string]any{"purpose": "cli", "kind": "webauthn", "stage": "result"}
		}
		s.emit(ctx, ev)
		return nil, fmt.Errorf("%w: wrong result token or callback code (the sign-in must come back to the browser of the machine that began it)", ErrUnauthenticated)
	}
	if err := s.b.Delete(ctx, key); err != nil {
		return nil, fmt.Errorf("%w: no outcome for this sign-in (already fetched)", ErrUnauthenticated)
	}
	if res.Error != "" {
		// The stored reason is an error's text, often already "access
		// denied: ...": say it once.
		return nil, fmt.Errorf("%w: %s", ErrAccessDenied, strings.TrimPrefix(res.Error, ErrAccessDenied.Error()+": "))
	}
	return &res, nil
}
