package auth

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// A fresh MFA check with a passkey for the CLI: WebAuthn runs only in a
// browser, on the proxy's origin, so the CLI hands the check to one as
// `warden login --passkey` does, and gets back a single-use token that
// its next call carries (wire.MFAResponse.Token, spent by verifyMFA).
// `warden mfa recovery-codes --passkey` uses it; per-session MFA will.

// BeginMFAHandoff starts a passkey check of the caller in a browser: the
// page to open, and what fetches the outcome (ResultMFAHandoff).
func (s *Server) BeginMFAHandoff(ctx context.Context, c Caller, req wire.PasskeyHandoffBegin) (*wire.PasskeyHandoff, error) {
	if err := s.authorize(c, "BeginMFAHandoff"); err != nil {
		return nil, err
	}
	if err := checkLoopbackRedirect(req.ClientRedirect); err != nil {
		return nil, err
	}
	user, _, err := s.localUser(ctx, c.User)
	if err != nil {
		return nil, err
	}
	if user.Count(identity.DeviceWebAuthn, false) == 0 {
		return nil, badRequest("you have no passkey or security key: use a code of your authenticator (--otp)")
	}
	var toks [3]string
	for i := range toks {
		if toks[i], err = identity.NewToken(); err != nil {
			return nil, err
		}
	}
	state, id, result := toks[0], toks[1], toks[2]
	p := passkeyPending{ID: id, MFA: true, User: c.User, ClientRedirect: req.ClientRedirect, ResultHash: identity.HashToken(result)}
	if err := s.createJSON(ctx, prefixPasskeyPending+identity.HashToken(state), p, s.now().Add(handoffTTL)); err != nil {
		return nil, err
	}
	page := (&url.URL{Scheme: "https", Host: s.cfg.PublicAddr, Path: "/web/mfa"}).String() + "?state=" + url.QueryEscape(state)
	return &wire.PasskeyHandoff{URL: page, ID: id, ResultToken: result}, nil
}

// mfaPending reads (without spending) the MFA hand-off of a state.
func (s *Server) mfaPending(ctx context.Context, state string) (*passkeyPending, string, error) {
	if state == "" || len(state) > 128 {
		return nil, "", badRequest("missing state")
	}
	key := prefixPasskeyPending + identity.HashToken(state)
	var p passkeyPending
	if err := s.getJSON(ctx, key, &p); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, "", fmt.Errorf("%w: unknown or already used MFA check; run the command again", ErrUnauthenticated)
		}
		return nil, "", err
	}
	if !p.MFA {
		return nil, "", fmt.Errorf("%w: this is not an MFA check", ErrUnauthenticated)
	}
	return &p, key, nil
}

// BeginHandoffMFAChallenge is the WebAuthn challenge of an MFA hand-off,
// for the page the CLI opened (which has only the state).
func (s *Server) BeginHandoffMFAChallenge(ctx context.Context, state string) (*wire.MFAChallenge, error) {
	p, _, err := s.mfaPending(ctx, state)
	if err != nil {
		return nil, err
	}
	u, _, err := s.localUser(ctx, p.User)
	if err != nil {
		return nil, err
	}
	return s.mfaChallenge(ctx, u)
}

// FinishMFAHandoff checks the passkey's answer (verifyMFA: the challenge,
// origin, RP ID, signature, the device, its counter) and keeps a
// single-use token for the CLI, which fetches it with its result token and
// the code sent to its loopback callback. The browser goes there, well or not.
func (s *Server) FinishMFAHandoff(ctx context.Context, state string, r wire.MFAResponse) (*wire.PasskeyLoginResult, error) {
	p, key, err := s.mfaPending(ctx, state)
	if err != nil {
		return nil, err
	}
	if err := s.b.Delete(ctx, key); err != nil {
		return nil, fmt.Errorf("%w: unknown or already used MFA check; run the command again", ErrUnauthenticated)
	}
	if r.WebAuthn == nil {
		return nil, badRequest("a passkey's answer is required")
	}
	res := handoffResult{ResultHash: p.ResultHash, Method: "mfa", User: p.User}
	v, verr := s.verifyMFA(ctx, p.User, wire.MFAResponse{ChallengeID: r.ChallengeID, WebAuthn: r.WebAuthn}, false, "cli")
	if verr == nil {
		res.MFAToken, verr = s.putCeremony(ctx, ceremony{Kind: ceremonyMFAToken, User: p.User, Name: v.Device})
	}
	if verr != nil {
		res.Error = verr.Error()
	}
	next, err := s.putHandoffResult(ctx, prefixPasskeyResult, p.ID, p.ClientRedirect, res)
	if err != nil {
		return nil, err
	}
	return &wire.PasskeyLoginResult{Redirect: next}, verr
}
