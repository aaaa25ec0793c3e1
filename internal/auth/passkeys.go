package auth

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// Sign-in with a passkey: passwordless (a discoverable credential with
// user verification) or as the second factor after the password; and
// `warden login --passkey`, which hands the sign-in to a browser on this
// proxy's web UI and gets the certificates back, as --sso does.

const (
	prefixPasskeyPending = "/passkey/pending/" // by the hash of the state; TTL handoffTTL
	prefixPasskeyResult  = "/passkey/results/" // by the login id; TTL resultTTL
	ceremonyEnrol        = "enrol"
	enrolTTL             = 10 * time.Minute
	handoffTTL           = 10 * time.Minute
	resultTTL            = 2 * time.Minute
)

// passkeyChallenges bounds the passwordless challenges one address asks for.
var passkeyChallenges = identity.ThrottleLimit{Burst: 30, Every: 2 * time.Second, MaxWait: time.Minute}

// PasskeyEnrolment is the refusal of a password sign-in when the cluster
// requires passkeys and the user has none: the password and second
// factor were right, and Token lets the web UI register a passkey for the
// user (BeginEnrolPasskey), nothing more.
type PasskeyEnrolment struct {
	User  string
	Token string
}

func (e *PasskeyEnrolment) Error() string {
	return "access denied: this cluster requires a passkey and you have none: sign in to the web UI to register one"
}

func (e *PasskeyEnrolment) Unwrap() error { return ErrAccessDenied }

// passkeyRequired is the refusal of a sign-in without a passkey.
func (s *Server) passkeyRequired(ctx context.Context, u *identity.User) error {
	if u.Count(identity.DeviceWebAuthn, false) > 0 {
		return denied("this cluster requires a passkey: sign in with it (the web UI, or warden login --passkey)")
	}
	tok, err := s.putCeremony(ctx, ceremony{Kind: ceremonyEnrol, User: u.Name})
	if err != nil {
		return err
	}
	return &PasskeyEnrolment{User: u.Name, Token: tok}
}

// BeginEnrolPasskey starts registering the first passkey of a user whose
// password sign-in was refused for want of one (PasskeyEnrolment).
func (s *Server) BeginEnrolPasskey(ctx context.Context, token, name string) (*wire.MFAAddChallenge, error) {
	cer, err := s.takeCeremony(ctx, token, ceremonyEnrol)
	if err != nil {
		return nil, err
	}
	return s.beginAddDevice(ctx, cer.User, wire.MFAAddRequest{Kind: identity.DeviceWebAuthn, Name: name}, true)
}

// FinishEnrolPasskey completes it; the user then signs in with it.
func (s *Server) FinishEnrolPasskey(ctx context.Context, req wire.MFAAddFinish) (*wire.MFADevice, error) {
	if req.WebAuthn == nil {
		return nil, badRequest("a passkey is required")
	}
	return s.finishAddDevice(ctx, "", req, true)
}

// BeginPasskeyLogin starts a WebAuthn sign-in. Passwordless (no user):
// any discoverable credential of this relying party, user verification
// required. With a user: the password is checked first (throttled, the
// same answer for an unknown user), then the user's WebAuthn devices may
// answer as the second factor.
func (s *Server) BeginPasskeyLogin(ctx context.Context, req wire.PasskeyLoginBegin) (*wire.PasskeyLoginChallenge, error) {
	if len(req.User) > 128 || len(req.Password) > 1024 {
		return nil, badRequest("oversized input")
	}
	wa, err := s.webAuthn()
	if err != nil {
		return nil, err
	}
	if req.User == "" {
		// Anyone may ask for a challenge, and each is kept until used or
		// expired: an address gets passkeyChallenges of them at once, then
		// one every 2 seconds.
		a, err := s.throttle.Begin(identity.ThrottleKey{Name: sourceKey(req.RemoteAddr) + " passkey challenges", Limit: passkeyChallenges})
		if err != nil {
			return nil, err
		}
		a.Fail()
		assertion, session, err := wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
		if err != nil {
			return nil, err
		}
		opts, err := json.Marshal(assertion)
		if err != nil {
			return nil, err
		}
		id, err := s.putCeremony(ctx, ceremony{Kind: ceremonyLogin, Session: *session, Passwordless: true})
		if err != nil {
			return nil, err
		}
		return &wire.PasskeyLoginChallenge{ID: id, WebAuthn: opts}, nil
	}
	attempt, err := s.beginAttempt(ctx, "login", req.RemoteAddr, req.User)
	if err != nil {
		return nil, err
	}
	defer attempt.Abandon()
	var u identity.User
	err = s.getJSON(ctx, prefixUsers+req.User, &u)
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	u.MigrateDevices()
	active := found && u.Type != identity.TypeSSO && u.Status == identity.StatusActive && u.HasPassword()
	hash := s.dummyHash
	if active {
		hash = u.PasswordHash
	}
	ok, err := s.checkPassword(ctx, hash, req.Password)
	if err != nil {
		return nil, err
	}
	if !active || !ok {
		attempt.Fail()
		reason := map[bool]string{true: "wrong password", false: "unknown user"}[found]
		s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginFailure, User: req.User, RemoteAddr: req.RemoteAddr,
			Success: false, Error: reason, Fields: map[string]any{"method": "password+passkey"}})
		return nil, ErrUnauthenticated
	}
	attempt.Succeed()
	if u.Count(identity.DeviceWebAuthn, false) == 0 {
		return nil, fmt.Errorf("%w: you have no passkey or security key: use the code of your authenticator", ErrUnauthenticated)
	}
	opts, session, err := s.beginAssertion(&u, protocol.VerificationPreferred)
	if err != nil {
		return nil, err
	}
	id, err := s.putCeremony(ctx, ceremony{Kind: ceremonyLogin, User: u.Name, Session: *session, PasswordOK: true})
	if err != nil {
		return nil, err
	}
	return &wire.PasskeyLoginChallenge{ID: id, WebAuthn: opts}, nil
}

// FinishPasskeyLogin checks the browser's assertion (challenge spent,
// origin, RP ID, signature, user verification for passwordless, the
// device still the user's, its counter forward), the user (local, signed
// up, not locked) and issues certificates: for req.PublicKey, or for the
// key of the hand-off req.State names, whose outcome is then kept for the
// CLI and the browser sent on to its loopback listener.
func (s *Server) FinishPasskeyLogin(ctx context.Context, req wire.PasskeyLoginFinish) (*wire.PasskeyLoginResult, error) {
	if len(req.WebAuthn) > maxWebAuthnJSON || len(req.PublicKey) > 16<<10 || len(req.State) > 128 {
		return nil, badRequest("oversized input")
	}
	var hand *passkeyPending
	if req.State != "" {
		key := prefixPasskeyPending + identity.HashToken(req.State)
		var p passkeyPending
		if err := s.getJSON(ctx, key, &p); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil, fmt.Errorf("%w: unknown or already used sign-in; run warden login --passkey again", ErrUnauthenticated)
			}
			return nil, err
		}
		if p.MFA {
			return nil, fmt.Errorf("%w: this is not a sign-in; run warden login --passkey again", ErrUnauthenticated)
		}
		if err := s.b.Delete(ctx, key); err != nil {
			return nil, fmt.Errorf("%w: unknown or already used sign-in; run warden login --passkey again", ErrUnauthenticated)
		}
		hand = &p
		req.PublicKey, req.TTL, req.Via = p.PublicKey, p.TTL, "cli"
	}
	resp, err := s.finishPasskeyLogin(ctx, req)
	if hand == nil {
		if err != nil {
			return nil, err
		}
		return &wire.PasskeyLoginResult{Login: resp}, nil
	}
	// The code goes only to the loopback listener of the machine whose
	// browser signed in: a CLI that began this sign-in elsewhere (a link
	// sent to someone to sign in with their passkey) cannot fetch it.
	res := handoffResult{ResultHash: hand.ResultHash, Login: resp, Method: "passkey"}
	if err != nil {
		res.Error = err.Error()
	}
	next, perr := s.putHandoffResult(ctx, prefixPasskeyResult, hand.ID, hand.ClientRedirect, res)
	if perr != nil {
		return nil, perr
	}
	return &wire.PasskeyLoginResult{Redirect: next}, err
}

// passkeyPending is a `warden login --passkey` between its start and the
// browser's sign-in.
type passkeyPending struct {
	ID string `json:"id"`
	// MFA: a fresh MFA check of User for the CLI (BeginMFAHandoff), not
	// a sign-in.
	MFA            bool          `json:"mfa,omitempty"`
	User           string        `json:"user,omitempty"`
	PublicKey      string        `json:"public_key"`
	ClientRedirect string        `json:"client_redirect"`
	TTL            time.Duration `json:"ttl,omitempty"`
	ResultHash     string        `json:"result_hash"`
	RemoteAddr     string        `json:"remote_addr"`
}

func (s *Server) finishPasskeyLogin(ctx context.Context, req wire.PasskeyLoginFinish) (*wire.LoginResponse, error) {
	method := "passkey"
	fields := func(f map[string]any) map[string]any {
		f["method"] = method
		if req.Via != "" {
			f["via"] = req.Via
		}
		return f
	}
	user := ""
	fail := func(reason string, err error) (*wire.LoginResponse, error) {
		s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginFailure, User: user, RemoteAddr: req.RemoteAddr,
			Success: false, Error: reason, Fields: fields(map[string]any{})})
		return nil, err
	}
	pub, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return fail("bad public key", badRequest("%v", err))
	}
	cer, err := s.takeCeremony(ctx, req.ID, ceremonyLogin)
	if err != nil {
		return fail("unknown, spent or expired challenge", err)
	}
	if !cer.Passwordless {
		method, user = "password+passkey", cer.User
		if !cer.PasswordOK || cer.User == "" {
			return fail("password not checked", errCeremony)
		}
	} else {
		// Whose passkey: the user handle the authenticator returned.
		parsed, err := protocol.ParseCredentialRequestResponseBytes(req.WebAuthn)
		if err != nil {
			return fail("bad assertion: "+protocolReason(err), badRequest("the browser's response is not valid: %v", err))
		}
		h := parsed.Response.UserHandle
		if len(h) == 0 || len(h) > 64 {
			return fail("no user handle", fmt.Errorf("%w: this passkey is not a discoverable credential of this cluster", ErrUnauthenticated))
		}
		if err := s.getJSON(ctx, prefixHandles+hex.EncodeToString(h), &user); err != nil {
			return fail("unknown user handle", fmt.Errorf("%w: this passkey is not registered here", ErrUnauthenticated))
		}
	}
	attempt, err := s.beginAttempt(ctx, "login", req.RemoteAddr, user)
	if err != nil {
		return nil, err
	}
	defer attempt.Abandon()
	issued := s.now()
	var u identity.User
	rev, err := s.getJSONRev(ctx, prefixUsers+user, &u)
	if err != nil {
		attempt.Fail()
		if errors.Is(err, storage.ErrNotFound) {
			return fail("unknown user", fmt.Errorf("%w: this passkey is not registered here", ErrUnauthenticated))
		}
		return nil, err
	}
	u.MigrateDevices()
	if u.Type == identity.TypeSSO || u.Status != identity.StatusActive || (cer.Passwordless && subtle.ConstantTimeCompare(u.WebAuthnID, parsedHandle(req.WebAuthn)) != 1) {
		attempt.Fail()
		return fail("user cannot sign in with a passkey", fmt.Errorf("%w: this passkey is not registered here", ErrUnauthenticated))
	}
	i, reason, err := s.checkAssertion(ctx, &u, cer, req.WebAuthn)
	if err != nil {
		attempt.Fail()
		return fail(reason, err)
	}
	attempt.Succeed()
	device := u.Devices[i].ID
	if err := s.CheckLock(lock.Subject{User: u.Name, Roles: u.Roles, MFADevices: []string{device}}); err != nil {
		return fail("locked", err)
	}
	if err := s.casJSON(ctx, prefixUsers+u.Name, rev, u, time.Time{}); err != nil {
		return fail("concurrent login", fmt.Errorf("%w: a concurrent sign-in; try again", ErrUnauthenticated))
	}
	resp, err := s.issueCerts(ctx, issueParams{user: u.Name, roles: u.Roles, traits: u.Traits, pub: pub, ttl: req.TTL, remote: req.RemoteAddr,
		issued: issued, mfaDevice: device})
	if err != nil {
		return fail("certificate issuance failed", err)
	}
	s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginSuccess, User: u.Name, RemoteAddr: req.RemoteAddr, Success: true,
		Fields: fields(map[string]any{"mfa_device": device, "device_name": u.Devices[i].Name})})
	return resp, nil
}

// parsedHandle is the user handle of an assertion (nil if it has none).
func parsedHandle(resp json.RawMessage) []byte {
	p, err := protocol.ParseCredentialRequestResponseBytes(resp)
	if err != nil {
		return nil
	}
	return p.Response.UserHandle
}

// BeginPasskeyHandoff starts `warden login --passkey`: the CLI's key and
// loopback callback are kept under the hash of a new state (single use,
// 10 minutes); the browser opens the web UI's passkey page with the state,
// and the CLI later fetches the outcome with a token only it knows.
func (s *Server) BeginPasskeyHandoff(ctx context.Context, req wire.PasskeyHandoffBegin) (*wire.PasskeyHandoff, error) {
	if _, err := parsePublicKey(req.PublicKey); err != nil {
		return nil, badRequest("%v", err)
	}
	if err := checkLoopbackRedirect(req.ClientRedirect); err != nil {
		return nil, err
	}
	if _, err := s.webAuthn(); err != nil {
		return nil, err
	}
	var toks [3]string
	for i := range toks {
		var err error
		if toks[i], err = identity.NewToken(); err != nil {
			return nil, err
		}
	}
	state, id, result := toks[0], toks[1], toks[2]
	p := passkeyPending{ID: id, PublicKey: req.PublicKey, ClientRedirect: req.ClientRedirect, TTL: req.TTL,
		ResultHash: identity.HashToken(result), RemoteAddr: req.RemoteAddr}
	if err := s.createJSON(ctx, prefixPasskeyPending+identity.HashToken(state), p, s.now().Add(handoffTTL)); err != nil {
		return nil, err
	}
	page := (&url.URL{Scheme: "https", Host: s.cfg.PublicAddr, Path: "/web/login/passkey"}).String() + "?state=" + url.QueryEscape(state)
	return &wire.PasskeyHandoff{URL: page, ID: id, ResultToken: result}, nil
}

// ResultPasskey hands the outcome of a `warden login --passkey` to the CLI
// that started it (it alone knows the result token) on the machine whose
// browser signed in (the callback code), once.
func (s *Server) ResultPasskey(ctx context.Context, req wire.PasskeyResultRequest) (*wire.LoginResponse, error) {
	res, err := s.takeResult(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.Login == nil {
		return nil, fmt.Errorf("%w: this is not a sign-in", ErrUnauthenticated)
	}
	return res.Login, nil
}

// ResultMFAHandoff hands the outcome of an MFA hand-off to the CLI that
// started it, as ResultPasskey does: the token its next call carries.
func (s *Server) ResultMFAHandoff(ctx context.Context, req wire.PasskeyResultRequest) (*wire.MFAResponse, error) {
	res, err := s.takeResult(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.MFAToken == "" {
		return nil, fmt.Errorf("%w: this is not an MFA check", ErrUnauthenticated)
	}
	return &wire.MFAResponse{Token: res.MFAToken}, nil
}

// takeResult fetches and deletes a hand-off's outcome, for the holder of
// its result token and callback code (takeHandoffResult).
func (s *Server) takeResult(ctx context.Context, req wire.PasskeyResultRequest) (*handoffResult, error) {
	return s.takeHandoffResult(ctx, prefixPasskeyResult, req.ID, req.ResultToken, req.Code, req.RemoteAddr)
}
