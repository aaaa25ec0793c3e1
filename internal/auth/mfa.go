package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// MFA devices and WebAuthn. A user has a list of devices (identity.MFADevice:
// TOTP or WebAuthn), each named. Every WebAuthn ceremony (registration,
// sign-in, a fresh MFA check) starts with a challenge auth keeps under
// prefixCeremonies (by the hash of its id, ceremonyTTL) and spends on the
// first attempt to finish it, right or wrong: single use. Origin and RP ID
// are checked by go-webauthn against Config.WebAuthn; user verification is
// required for a passwordless sign-in; a sign counter that goes backwards
// is refused and audited (mfa.counter_regression).

const (
	prefixCeremonies = "/mfa/ceremonies/"     // by the hash of the id; TTL ceremonyTTL
	prefixHandles    = "/mfa/webauthn-users/" // by hex user handle → user name
	ceremonyTTL      = 5 * time.Minute
	// maxWebAuthnJSON bounds a browser's WebAuthn response.
	maxWebAuthnJSON = 64 << 10
)

// WebAuthnConfig is the relying party: its id (a domain) and the origins
// browsers may sign in from. Empty fields are derived from the proxy's
// public address (WebAuthnRP).
type WebAuthnConfig struct {
	RPID    string
	Origins []string
}

// WebAuthnRP returns the RP ID and origins for a proxy public address
// (host:port): the host, and https://host:port (https://host for 443).
func WebAuthnRP(publicAddr string, cfg WebAuthnConfig) (string, []string) {
	host, port, err := net.SplitHostPort(publicAddr)
	if err != nil {
		host, port = publicAddr, "443"
	}
	rpID, origins := cfg.RPID, cfg.Origins
	if rpID == "" {
		rpID = host
	}
	if len(origins) == 0 {
		o := "https://" + net.JoinHostPort(host, port)
		if port == "443" {
			o = "https://" + host
		}
		origins = []string{o}
	}
	return rpID, origins
}

type webAuthnRP struct {
	once sync.Once
	wa   *webauthn.WebAuthn
	err  error
}

// webAuthn is the relying party, made at first use: a cluster whose public
// address is an IP address has none (browsers refuse IP addresses as RP
// IDs), and says so when a passkey is used.
func (s *Server) webAuthn() (*webauthn.WebAuthn, error) {
	s.wa.once.Do(func() {
		rpID, origins := WebAuthnRP(s.cfg.PublicAddr, s.cfg.WebAuthn)
		if net.ParseIP(rpID) != nil {
			s.wa.err = fmt.Errorf("passkeys need a domain name as the WebAuthn RP ID, not the IP address %s: set proxy.public_addr "+
				"to a DNS name (or auth.webauthn.rp_id and origins)", rpID)
			return
		}
		s.wa.wa, s.wa.err = webauthn.New(&webauthn.Config{RPID: rpID, RPOrigins: origins, RPDisplayName: "Warden " + s.cfg.ClusterName})
		if s.wa.err != nil {
			s.wa.err = fmt.Errorf("WebAuthn relying party %q %v: %v", rpID, origins, s.wa.err)
		}
	})
	return s.wa.wa, s.wa.err
}

// waUser is a user as go-webauthn sees one: its handle and credentials.
type waUser struct {
	u     *identity.User
	creds []webauthn.Credential
}

func (w *waUser) WebAuthnID() []byte                         { return w.u.WebAuthnID }
func (w *waUser) WebAuthnName() string                       { return w.u.Name }
func (w *waUser) WebAuthnDisplayName() string                { return w.u.Name }
func (w *waUser) WebAuthnCredentials() []webauthn.Credential { return w.creds }

func newWAUser(u *identity.User) (*waUser, error) {
	w := &waUser{u: u}
	for _, d := range u.Devices {
		if d.Kind != identity.DeviceWebAuthn {
			continue
		}
		var c webauthn.Credential
		if err := json.Unmarshal(d.WebAuthn, &c); err != nil {
			return nil, fmt.Errorf("device %s: %w", d.ID, err)
		}
		w.creds = append(w.creds, c)
	}
	return w, nil
}

// ceremony is a WebAuthn (or TOTP enrolment) challenge between its start
// and its finish.
type ceremony struct {
	Kind    string               `json:"kind"` // ceremonyRegister, ceremonyLogin, ceremonyMFA, ceremonyTOTP
	User    string               `json:"user,omitempty"`
	Session webauthn.SessionData `json:"session"`
	Expires time.Time            `json:"expires"`
	// Name is the device being added; TOTPSecret its secret (TOTP).
	Name       string `json:"name,omitempty"`
	TOTPSecret string `json:"totp_secret,omitempty"`
	// Passwordless: a sign-in with a discoverable credential alone.
	// PasswordOK: the password of User was checked at the start.
	Passwordless bool `json:"passwordless,omitempty"`
	PasswordOK   bool `json:"password_ok,omitempty"`
	// Enrol: a registration begun with an enrolment token
	// (BeginEnrolPasskey), which FinishEnrolPasskey alone finishes.
	Enrol bool `json:"enrol,omitempty"`
}

const (
	ceremonyRegister = "register"
	ceremonyLogin    = "login"
	ceremonyMFA      = "mfa"
	ceremonyTOTP     = "totp"
	// ceremonyMFAToken is not a challenge but its outcome: a passkey check
	// made in the browser for the CLI, spent by the call it allows.
	ceremonyMFAToken = "mfa-token"
)

var errCeremony = fmt.Errorf("%w: unknown, used or expired challenge; start again", ErrUnauthenticated)

func (s *Server) putCeremony(ctx context.Context, c ceremony) (string, error) {
	id, err := identity.NewToken()
	if err != nil {
		return "", err
	}
	ttl := ceremonyTTL
	if c.Kind == ceremonyEnrol {
		ttl = enrolTTL
	}
	c.Expires = s.now().Add(ttl)
	if err := s.createJSON(ctx, prefixCeremonies+identity.HashToken(id), c, c.Expires); err != nil {
		return "", err
	}
	return id, nil
}

// takeCeremony spends a challenge: whoever deletes it goes on, once; an
// expired one is refused even if the store has not reaped it yet.
func (s *Server) takeCeremony(ctx context.Context, id, kind string) (*ceremony, error) {
	if id == "" || len(id) > 128 {
		return nil, errCeremony
	}
	key := prefixCeremonies + identity.HashToken(id)
	var c ceremony
	if err := s.getJSON(ctx, key, &c); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, errCeremony
		}
		return nil, err
	}
	if err := s.b.Delete(ctx, key); err != nil {
		return nil, errCeremony
	}
	if c.Kind != kind || !s.now().Before(c.Expires) {
		return nil, errCeremony
	}
	return &c, nil
}

// localUser loads a local user who has signed up, for their own MFA
// operations, with devices from before lists migrated.
func (s *Server) localUser(ctx context.Context, name string) (*identity.User, int64, error) {
	var u identity.User
	rev, err := s.getJSONRev(ctx, prefixUsers+name, &u)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, 0, fmt.Errorf("%w: user %q does not exist", ErrAccessDenied, name)
		}
		return nil, 0, err
	}
	if u.Type == identity.TypeSSO {
		return nil, 0, denied("user %q signs in with SSO connector %q: MFA devices are the identity provider's", name, u.Connector)
	}
	if u.Status != identity.StatusActive {
		return nil, 0, denied("user %q has not completed signup", name)
	}
	u.MigrateDevices()
	return &u, rev, nil
}

func deviceInfo(d identity.MFADevice) wire.MFADevice {
	return wire.MFADevice{ID: d.ID, Name: d.Name, Kind: d.Kind, Passkey: d.Passkey, CreatedAt: d.CreatedAt, LastUsed: d.LastUsed}
}

// ListMFADevices lists the caller's MFA devices.
func (s *Server) ListMFADevices(ctx context.Context, c Caller) (*wire.MFADevices, error) {
	if err := s.authorize(c, "ListMFADevices"); err != nil {
		return nil, err
	}
	u, _, err := s.localUser(ctx, c.User)
	if err != nil {
		return nil, err
	}
	out := &wire.MFADevices{Devices: []wire.MFADevice{}, RecoveryCodesLeft: u.Recovery.Left(), PasskeyRequired: s.requirePasskey(ctx)}
	for _, d := range u.Devices {
		out.Devices = append(out.Devices, deviceInfo(d))
	}
	return out, nil
}

// BeginAddMFADevice starts adding a device to the caller: a TOTP secret to
// enrol, or WebAuthn creation options (a discoverable credential, user
// verification preferred; the user's other credentials excluded).
func (s *Server) BeginAddMFADevice(ctx context.Context, c Caller, req wire.MFAAddRequest) (*wire.MFAAddChallenge, error) {
	if err := s.authorize(c, "BeginAddMFADevice"); err != nil {
		return nil, err
	}
	return s.beginAddDevice(ctx, c.User, req, false)
}

func (s *Server) beginAddDevice(ctx context.Context, name string, req wire.MFAAddRequest, enrol bool) (*wire.MFAAddChallenge, error) {
	if err := identity.ValidateDeviceName(req.Name); err != nil {
		return nil, badRequest("%v", err)
	}
	u, rev, err := s.localUser(ctx, name)
	if err != nil {
		return nil, err
	}
	if u.DeviceByName(req.Name) >= 0 {
		return nil, badRequest("you already have a device named %q", req.Name)
	}
	if len(u.Devices) >= identity.MaxDevices {
		return nil, badRequest("you have %d devices, the most there may be; remove one first", len(u.Devices))
	}
	switch req.Kind {
	case identity.DeviceTOTP:
		secret, url, png, err := identity.NewTOTP("Warden "+s.cfg.ClusterName, u.Name)
		if err != nil {
			return nil, err
		}
		id, err := s.putCeremony(ctx, ceremony{Kind: ceremonyTOTP, User: u.Name, Name: req.Name, TOTPSecret: secret})
		if err != nil {
			return nil, err
		}
		return &wire.MFAAddChallenge{ID: id, TOTPSecret: secret, TOTPURL: url, QRPNG: png}, nil
	case identity.DeviceWebAuthn:
		wa, err := s.webAuthn()
		if err != nil {
			return nil, err
		}
		if len(u.WebAuthnID) == 0 {
			// The user handle: random, never the name.
			u.WebAuthnID = make([]byte, 32)
			if _, err := rand.Read(u.WebAuthnID); err != nil {
				return nil, err
			}
			if err := s.casJSON(ctx, prefixUsers+u.Name, rev, u, time.Time{}); err != nil {
				return nil, fmt.Errorf("%w: a concurrent change to your user; try again", ErrConflict)
			}
			if err := s.putJSON(ctx, prefixHandles+hex.EncodeToString(u.WebAuthnID), u.Name, time.Time{}); err != nil {
				return nil, err
			}
		}
		wu, err := newWAUser(u)
		if err != nil {
			return nil, err
		}
		var exclude []protocol.CredentialDescriptor
		for _, c := range wu.creds {
			exclude = append(exclude, c.Descriptor())
		}
		creation, session, err := wa.BeginRegistration(wu,
			webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
				ResidentKey: protocol.ResidentKeyRequirementPreferred, RequireResidentKey: protocol.ResidentKeyNotRequired(),
				UserVerification: protocol.VerificationPreferred}),
			webauthn.WithExclusions(exclude), webauthn.WithConveyancePreference(protocol.PreferNoAttestation))
		if err != nil {
			return nil, err
		}
		opts, err := json.Marshal(creation)
		if err != nil {
			return nil, err
		}
		id, err := s.putCeremony(ctx, ceremony{Kind: ceremonyRegister, User: u.Name, Name: req.Name, Session: *session, Enrol: enrol})
		if err != nil {
			return nil, err
		}
		return &wire.MFAAddChallenge{ID: id, WebAuthn: opts}, nil
	}
	return nil, badRequest("device kind %q is not %q or %q", req.Kind, identity.DeviceTOTP, identity.DeviceWebAuthn)
}

// FinishAddMFADevice completes adding a device: the TOTP code the new
// device shows, or the browser's attestation (origin, RP ID, challenge
// checked by go-webauthn).
func (s *Server) FinishAddMFADevice(ctx context.Context, c Caller, req wire.MFAAddFinish) (*wire.MFADevice, error) {
	if err := s.authorize(c, "FinishAddMFADevice"); err != nil {
		return nil, err
	}
	return s.finishAddDevice(ctx, c.User, req, false)
}

// finishAddDevice adds the device of req's ceremony to the user name, or
// with enrol to the user of an enrolment's ceremony.
func (s *Server) finishAddDevice(ctx context.Context, name string, req wire.MFAAddFinish, enrol bool) (*wire.MFADevice, error) {
	if len(req.WebAuthn) > maxWebAuthnJSON || len(req.OTP) > 16 {
		return nil, badRequest("oversized response")
	}
	kind := ceremonyRegister
	if req.WebAuthn == nil {
		kind = ceremonyTOTP
	}
	cer, err := s.takeCeremony(ctx, req.ID, kind)
	if err != nil {
		return nil, err
	}
	if enrol {
		if !cer.Enrol {
			return nil, errCeremony
		}
		name = cer.User
	}
	if cer.User != name || cer.User == "" {
		return nil, errCeremony
	}
	u, rev, err := s.localUser(ctx, name)
	if err != nil {
		return nil, err
	}
	if u.DeviceByName(cer.Name) >= 0 {
		return nil, badRequest("you already have a device named %q", cer.Name)
	}
	now := s.now().UTC()
	var d identity.MFADevice
	fail := func(reason string, err error) (*wire.MFADevice, error) {
		s.emit(ctx, audit.Event{Event: audit.MFAAdd, User: name, Success: false, Error: reason,
			Fields: map[string]any{"name": cer.Name, "kind": map[string]string{ceremonyTOTP: identity.DeviceTOTP, ceremonyRegister: identity.DeviceWebAuthn}[kind]}})
		return nil, err
	}
	if kind == ceremonyTOTP {
		step, err := identity.VerifyTOTP(cer.TOTPSecret, req.OTP, 0, s.now())
		if err != nil {
			return fail("invalid TOTP code", badRequest("the code is not valid: check the device's clock and start again"))
		}
		if d.ID, err = identity.NewDeviceID(identity.DeviceTOTP); err != nil {
			return nil, err
		}
		d.Kind, d.TOTPSecret, d.TOTPLastStep = identity.DeviceTOTP, cer.TOTPSecret, step
	} else {
		wa, err := s.webAuthn()
		if err != nil {
			return nil, err
		}
		parsed, err := protocol.ParseCredentialCreationResponseBytes(req.WebAuthn)
		if err != nil {
			return fail("bad attestation: "+protocolReason(err), badRequest("the browser's response is not valid: %v", err))
		}
		wu, err := newWAUser(u)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(cer.Session.UserID, u.WebAuthnID) {
			return fail("user handle changed", errCeremony)
		}
		cred, err := wa.CreateCredential(wu, cer.Session, parsed)
		if err != nil {
			return fail("attestation refused: "+protocolReason(err), fmt.Errorf("%w: the passkey was not accepted: %v", ErrUnauthenticated, err))
		}
		for _, other := range wu.creds {
			if bytes.Equal(other.ID, cred.ID) {
				return fail("credential already registered", badRequest("this passkey is already registered"))
			}
		}
		rec, err := json.Marshal(cred)
		if err != nil {
			return nil, err
		}
		if d.ID, err = identity.NewDeviceID(identity.DeviceWebAuthn); err != nil {
			return nil, err
		}
		d.Kind, d.CredentialID, d.WebAuthn, d.Passkey = identity.DeviceWebAuthn, cred.ID, rec, cred.Flags.UserVerified
	}
	d.Name, d.CreatedAt = cer.Name, now
	u.Devices = append(u.Devices, d)
	u.UpdatedAt = now
	if err := s.casJSON(ctx, prefixUsers+u.Name, rev, u, time.Time{}); err != nil {
		return nil, fmt.Errorf("%w: a concurrent change to your user; try again", ErrConflict)
	}
	s.emit(ctx, audit.Event{Event: audit.MFAAdd, User: name, Success: true,
		Fields: map[string]any{"mfa_device": d.ID, "name": d.Name, "kind": d.Kind, "passkey": d.Passkey}})
	info := deviceInfo(d)
	return &info, nil
}

// DeleteMFADevice removes one of the caller's devices, by name or id. The
// last one is refused: a local user always has a second factor (and, when
// the cluster requires passkeys, a passkey).
func (s *Server) DeleteMFADevice(ctx context.Context, c Caller, name string) error {
	if err := s.authorize(c, "DeleteMFADevice"); err != nil {
		return err
	}
	u, rev, err := s.localUser(ctx, c.User)
	if err != nil {
		return err
	}
	i := u.DeviceByName(name)
	if i < 0 {
		return fmt.Errorf("MFA device %q: %w", name, storage.ErrNotFound)
	}
	d := u.Devices[i]
	switch {
	case len(u.Devices) == 1:
		return badRequest("%q is your only MFA device: add another one first (warden mfa add), then remove this one", d.Name)
	case s.requirePasskey(ctx) && d.Kind == identity.DeviceWebAuthn && u.Count(identity.DeviceWebAuthn, false) == 1:
		return badRequest("%q is your only passkey and this cluster requires one: add another passkey first", d.Name)
	}
	u.Devices = slices.Delete(u.Devices, i, i+1)
	if u.MFADevice == d.ID {
		// users ls shows one device id: no longer this one.
		u.MFADevice = u.Devices[0].ID
	}
	u.UpdatedAt = s.now().UTC()
	if err := s.casJSON(ctx, prefixUsers+u.Name, rev, u, time.Time{}); err != nil {
		return fmt.Errorf("%w: a concurrent change to your user; try again", ErrConflict)
	}
	s.emit(ctx, audit.Event{Event: audit.MFADelete, User: c.User, Success: true,
		Fields: map[string]any{"mfa_device": d.ID, "name": d.Name, "kind": d.Kind}})
	return nil
}

// BeginMFAChallenge starts a fresh MFA check of the caller: any of their
// devices may answer it (VerifyMFA).
func (s *Server) BeginMFAChallenge(ctx context.Context, c Caller) (*wire.MFAChallenge, error) {
	if err := s.authorize(c, "BeginMFAChallenge"); err != nil {
		return nil, err
	}
	u, _, err := s.localUser(ctx, c.User)
	if err != nil {
		return nil, err
	}
	return s.mfaChallenge(ctx, u)
}

// mfaChallenge is a fresh MFA check of u: TOTP if it has such a device,
// and a WebAuthn challenge for its WebAuthn devices.
func (s *Server) mfaChallenge(ctx context.Context, u *identity.User) (*wire.MFAChallenge, error) {
	out := &wire.MFAChallenge{TOTP: u.Count(identity.DeviceTOTP, false) > 0}
	if u.Count(identity.DeviceWebAuthn, false) == 0 {
		return out, nil
	}
	opts, session, err := s.beginAssertion(u, protocol.VerificationPreferred)
	if err != nil {
		return nil, err
	}
	if out.ID, err = s.putCeremony(ctx, ceremony{Kind: ceremonyMFA, User: u.Name, Session: *session}); err != nil {
		return nil, err
	}
	out.WebAuthn = opts
	return out, nil
}

// beginAssertion makes assertion options for the user's WebAuthn devices.
func (s *Server) beginAssertion(u *identity.User, uv protocol.UserVerificationRequirement) (json.RawMessage, *webauthn.SessionData, error) {
	wa, err := s.webAuthn()
	if err != nil {
		return nil, nil, err
	}
	wu, err := newWAUser(u)
	if err != nil {
		return nil, nil, err
	}
	assertion, session, err := wa.BeginLogin(wu, webauthn.WithUserVerification(uv))
	if err != nil {
		return nil, nil, err
	}
	opts, err := json.Marshal(assertion)
	return opts, session, err
}

// VerifyMFA checks a fresh MFA response of the caller from any of their
// devices: a TOTP code, or a WebAuthn assertion for a challenge of
// BeginMFAChallenge. It is the one entry point for every fresh check
// (recovery codes, and per-session MFA). Audited as mfa.verify.
func (s *Server) VerifyMFA(ctx context.Context, c Caller, r wire.MFAResponse) (*wire.MFAVerified, error) {
	if err := s.authorize(c, "VerifyMFA"); err != nil {
		return nil, err
	}
	return s.verifyMFA(ctx, c.User, r, false, "verify")
}

// verifyMFA checks r against the user's devices (and recovery codes if
// recovery), records the device's use, and audits the check for purpose.
func (s *Server) verifyMFA(ctx context.Context, name string, r wire.MFAResponse, recovery bool, purpose string) (*wire.MFAVerified, error) {
	fail := func(reason string, err error) (*wire.MFAVerified, error) {
		s.emit(ctx, audit.Event{Event: audit.MFAVerify, User: name, Success: false, Error: reason, Fields: map[string]any{"purpose": purpose}})
		return nil, err
	}
	if len(r.OTP) > 64 || len(r.WebAuthn) > maxWebAuthnJSON {
		return fail("oversized response", badRequest("oversized MFA response"))
	}
	if r.WebAuthn == nil && r.OTP == "" && r.Token == "" {
		return nil, badRequest("an MFA response is required: a code from your authenticator, or a passkey")
	}
	if r.Token != "" {
		// A passkey check the browser made for the CLI (FinishMFAHandoff).
		tok, err := s.takeCeremony(ctx, r.Token, ceremonyMFAToken)
		if err != nil || tok.User != name {
			return fail("unknown or spent MFA token", fmt.Errorf("%w: the MFA check expired or was used; check again", ErrUnauthenticated))
		}
		v := &wire.MFAVerified{Device: tok.Name, Kind: identity.DeviceWebAuthn}
		s.emit(ctx, audit.Event{Event: audit.MFAVerify, User: name, Success: true,
			Fields: map[string]any{"purpose": purpose, "mfa_device": v.Device, "kind": v.Kind, "via": "browser"}})
		return v, nil
	}
	var cer *ceremony
	if r.WebAuthn != nil {
		var err error
		if cer, err = s.takeCeremony(ctx, r.ChallengeID, ceremonyMFA); err != nil {
			return fail("unknown or spent challenge", err)
		}
		if cer.User != name {
			return fail("challenge of another user", errCeremony)
		}
	}
	attempt, err := s.beginAttempt(ctx, "mfa", "user:"+name, name)
	if err != nil {
		return nil, err
	}
	defer attempt.Abandon()
	u, rev, err := s.localUser(ctx, name)
	if err != nil {
		return nil, err
	}
	var v wire.MFAVerified
	switch {
	case r.WebAuthn != nil:
		i, reason, err := s.checkAssertion(ctx, u, cer, r.WebAuthn)
		if err != nil {
			attempt.Fail()
			return fail(reason, err)
		}
		v = wire.MFAVerified{Device: u.Devices[i].ID, Kind: identity.DeviceWebAuthn}
	case recovery && identity.LooksLikeRecoveryCode(r.OTP):
		if !u.Recovery.Use(r.OTP) {
			attempt.Fail()
			return fail("invalid recovery code", fmt.Errorf("%w: invalid or already used recovery code", ErrUnauthenticated))
		}
		v = wire.MFAVerified{Device: recoveryDeviceID(u), Kind: "recovery_code"}
	case r.OTP != "":
		i, err := u.VerifyTOTPDevices(r.OTP, s.now())
		if errors.Is(err, identity.ErrTOTPReplayed) {
			attempt.Fail()
			return fail("TOTP code replayed", fmt.Errorf("%w: this code was already used; wait for the next one", ErrUnauthenticated))
		}
		if err != nil {
			attempt.Fail()
			return fail("invalid TOTP code", fmt.Errorf("%w: invalid MFA code", ErrUnauthenticated))
		}
		u.Devices[i].LastUsed = s.now().UTC()
		v = wire.MFAVerified{Device: u.Devices[i].ID, Kind: identity.DeviceTOTP}
	default:
		return fail("no response", badRequest("an MFA response is required"))
	}
	if err := s.casJSON(ctx, prefixUsers+u.Name, rev, u, time.Time{}); err != nil {
		return fail("concurrent change", fmt.Errorf("%w: a concurrent change to your user; try again", ErrUnauthenticated))
	}
	attempt.Succeed()
	s.emit(ctx, audit.Event{Event: audit.MFAVerify, User: name, Success: true,
		Fields: map[string]any{"purpose": purpose, "mfa_device": v.Device, "kind": v.Kind}})
	return &v, nil
}

// recoveryDeviceID names a user's set of recovery codes where a device id
// goes (certificates, locks).
func recoveryDeviceID(u *identity.User) string {
	if u.Recovery == nil || len(u.Recovery.Key) < 8 {
		return "recovery"
	}
	return "recovery-" + hex.EncodeToString(u.Recovery.Key[:8])
}

// checkAssertion verifies a WebAuthn assertion of the user for the
// ceremony: the library checks challenge, origin, RP ID, signature, user
// presence and (if the ceremony required it) verification; here, that the
// credential is a device the user still has, and that its counter went
// forward. On success it updates the device (counter, last use) in u and
// returns its index; on failure the reason for the audit log.
func (s *Server) checkAssertion(ctx context.Context, u *identity.User, cer *ceremony, resp json.RawMessage) (int, string, error) {
	refused := fmt.Errorf("%w: the passkey was not accepted", ErrUnauthenticated)
	wa, err := s.webAuthn()
	if err != nil {
		return -1, "no relying party", err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(resp)
	if err != nil {
		return -1, "bad assertion: " + protocolReason(err), badRequest("the browser's response is not valid: %v", err)
	}
	wu, err := newWAUser(u)
	if err != nil {
		return -1, "bad device record", err
	}
	var cred *webauthn.Credential
	if cer.Passwordless {
		cred, err = wa.ValidateDiscoverableLogin(func(_, _ []byte) (webauthn.User, error) { return wu, nil }, cer.Session, parsed)
	} else {
		cred, err = wa.ValidateLogin(wu, cer.Session, parsed)
	}
	if err != nil {
		return -1, "assertion refused: " + protocolReason(err), refused
	}
	i := slices.IndexFunc(u.Devices, func(d identity.MFADevice) bool {
		return d.Kind == identity.DeviceWebAuthn && bytes.Equal(d.CredentialID, cred.ID)
	})
	if i < 0 {
		return -1, "unknown credential", refused
	}
	if cred.Authenticator.CloneWarning {
		s.emit(ctx, audit.Event{Event: audit.MFACounterRegression, User: u.Name, Success: false,
			Error: "sign counter did not increase", Fields: map[string]any{"mfa_device": u.Devices[i].ID, "name": u.Devices[i].Name,
				"counter": parsed.Response.AuthenticatorData.Counter}})
		return -1, "sign counter regression", fmt.Errorf("%w: passkey %q signed with a counter that went backwards (a copy of it may exist); "+
			"it is refused: remove it and register it again, or use another device", ErrUnauthenticated, u.Devices[i].Name)
	}
	rec, err := json.Marshal(cred)
	if err != nil {
		return -1, "bad device record", err
	}
	u.Devices[i].WebAuthn, u.Devices[i].LastUsed = rec, s.now().UTC()
	return i, "", nil
}

// protocolReason is a go-webauthn error with its details, for the audit log.
func protocolReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" {
		return pe.Details + " (" + pe.DevInfo + ")"
	}
	return err.Error()
}

// RegenerateRecoveryCodes replaces the caller's recovery codes with
// identity.RecoveryCodeCount new ones, after a fresh MFA check (a device,
// or one of the old recovery codes). The codes are returned once; only
// keyed hashes are kept.
func (s *Server) RegenerateRecoveryCodes(ctx context.Context, c Caller, r wire.MFAResponse) (*wire.RecoveryCodes, error) {
	if err := s.authorize(c, "RegenerateRecoveryCodes"); err != nil {
		return nil, err
	}
	if _, err := s.verifyMFA(ctx, c.User, r, true, "recovery codes"); err != nil {
		return nil, err
	}
	u, rev, err := s.localUser(ctx, c.User)
	if err != nil {
		return nil, err
	}
	codes, rc, err := identity.NewRecoveryCodes(s.now().UTC())
	if err != nil {
		return nil, err
	}
	u.Recovery = rc
	if err := s.casJSON(ctx, prefixUsers+u.Name, rev, u, time.Time{}); err != nil {
		return nil, fmt.Errorf("%w: a concurrent change to your user; try again", ErrConflict)
	}
	s.emit(ctx, audit.Event{Event: audit.MFARecoveryCodes, User: c.User, Success: true, Fields: map[string]any{"count": len(codes)}})
	return &wire.RecoveryCodes{Codes: codes}, nil
}
