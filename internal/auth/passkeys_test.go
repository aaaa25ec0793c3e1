package auth_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/wire"
)

const testPassword = "a good long password"

// passkeyFixture is newFixture with a relying party browsers would take
// (a single-label host such as the fixture's "proxy" is not a domain).
func passkeyFixture(t *testing.T, mods ...func(*auth.Config)) *fixture {
	return newFixture(t, append([]func(*auth.Config){func(c *auth.Config) {
		c.WebAuthn = auth.WebAuthnConfig{RPID: "warden.test", Origins: []string{"https://warden.test:3080"}}
	}}, mods...)...)
}

// userCaller is name as an API caller with a current certificate.
func (f *fixture) userCaller(name string, roles []string) auth.Caller {
	f.t.Helper()
	c, err := f.a.CurrentCaller(context.Background(), auth.Caller{Kind: auth.KindUser, User: name, Roles: roles, Issued: f.clock.Now()}, "test", "")
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// addPasskey registers key as the user's device name.
func (f *fixture) addPasskey(c auth.Caller, name string, key *softKey) *wire.MFADevice {
	f.t.Helper()
	ctx := context.Background()
	ch, err := f.a.BeginAddMFADevice(ctx, c, wire.MFAAddRequest{Kind: "webauthn", Name: name})
	if err != nil {
		f.t.Fatal(err)
	}
	d, err := f.a.FinishAddMFADevice(ctx, c, wire.MFAAddFinish{ID: ch.ID, WebAuthn: key.create(ch.WebAuthn)})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// passwordless signs in with key alone.
func (f *fixture) passwordless(key *softKey) (*wire.LoginResponse, error) {
	ctx := context.Background()
	ch, err := f.a.BeginPasskeyLogin(ctx, wire.PasskeyLoginBegin{})
	if err != nil {
		f.t.Fatal(err)
	}
	res, err := f.a.FinishPasskeyLogin(ctx, wire.PasskeyLoginFinish{ID: ch.ID, WebAuthn: key.get(ch.WebAuthn), PublicKey: pubKey(f.t)})
	if err != nil {
		return nil, err
	}
	return res.Login, nil
}

func certDevice(t *testing.T, resp *wire.LoginResponse) string {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.SSHCert))
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.IdentityFromSSHCert(pub.(*ssh.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	return id.MFADevice
}

func TestPasskeyRegistrationAndSignIn(t *testing.T) {
	f := passkeyFixture(t)
	ctx := context.Background()
	secret := f.signup("dev", []string{"access"}, []string{"dev"})
	c := f.userCaller("dev", []string{"access"})
	key := newSoftKey(t)
	d := f.addPasskey(c, "laptop", key)
	if d.Kind != "webauthn" || !d.Passkey || !strings.HasPrefix(d.ID, "webauthn-") {
		t.Fatalf("device %+v", d)
	}
	list, err := f.a.ListMFADevices(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Devices) != 2 || list.Devices[0].Name != "otp" || list.Devices[0].Kind != "totp" || list.Devices[1].Name != "laptop" {
		t.Fatalf("devices %+v", list.Devices)
	}
	// A second device of the same name is refused.
	if _, err := f.a.BeginAddMFADevice(ctx, c, wire.MFAAddRequest{Kind: "webauthn", Name: "laptop"}); !errors.Is(err, auth.ErrBadRequest) {
		t.Fatalf("duplicate name: %v", err)
	}

	// Passwordless: the certificates name the passkey's device.
	resp, err := f.passwordless(key)
	if err != nil {
		t.Fatal(err)
	}
	if resp.User != "dev" || certDevice(t, resp) != d.ID {
		t.Fatalf("passwordless sign-in as %q with device %q, want dev and %s", resp.User, certDevice(t, resp), d.ID)
	}
	list, _ = f.a.ListMFADevices(ctx, c)
	if list.Devices[1].LastUsed.IsZero() {
		t.Fatal("last use of the passkey not recorded")
	}

	// Second factor: the password first, then the passkey (without user
	// verification: the password is the other factor).
	if _, err := f.a.BeginPasskeyLogin(ctx, wire.PasskeyLoginBegin{User: "dev", Password: "wrong password!"}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("wrong password: %v", err)
	}
	ch, err := f.a.BeginPasskeyLogin(ctx, wire.PasskeyLoginBegin{User: "dev", Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	key.uv = false
	res, err := f.a.FinishPasskeyLogin(ctx, wire.PasskeyLoginFinish{ID: ch.ID, WebAuthn: key.get(ch.WebAuthn), PublicKey: pubKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	if certDevice(t, res.Login) != d.ID {
		t.Fatal("second-factor sign-in did not record the passkey")
	}
	evs := f.events(audit.Query{Type: audit.UserLogin, User: "dev"})
	if last := evs[len(evs)-1]; last.Fields["method"] != "password+passkey" || last.Fields["mfa_device"] != d.ID {
		t.Fatalf("login event %+v", last.Fields)
	}
	// TOTP still works, from the device list.
	if _, err := f.a.Login(ctx, auth.LoginRequest{User: "dev", Password: testPassword, OTP: f.code(secret), PublicKey: pubKey(t)}); err != nil {
		t.Fatal(err)
	}
	if evs := f.events(audit.Query{Type: audit.MFAAdd, User: "dev"}); len(evs) != 1 || evs[0].Fields["name"] != "laptop" {
		t.Fatalf("mfa.add events %+v", evs)
	}
}

// TestPasskeyRefusals: each check, by a key that gets one thing wrong.
func TestPasskeyRefusals(t *testing.T) {
	f := passkeyFixture(t)
	ctx := context.Background()
	f.signup("dev", []string{"access"}, []string{"dev"})
	c := f.userCaller("dev", []string{"access"})
	key := newSoftKey(t)
	laptop := f.addPasskey(c, "laptop", key)
	if _, err := f.passwordless(key); err != nil {
		t.Fatal(err)
	}
	refused := func(t *testing.T, what string, err error) {
		t.Helper()
		if !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("%s: accepted or wrong error: %v", what, err)
		}
	}

	t.Run("origin", func(t *testing.T) {
		key.origin = "https://evil.example:3080"
		defer func() { key.origin = "https://warden.test:3080" }()
		_, err := f.passwordless(key)
		refused(t, "another origin", err)
	})
	t.Run("rp id", func(t *testing.T) {
		key.rpID = "evil.example"
		defer func() { key.rpID = "warden.test" }()
		_, err := f.passwordless(key)
		refused(t, "another RP ID", err)
	})
	t.Run("registration origin", func(t *testing.T) {
		other := newSoftKey(t)
		other.origin = "https://evil.example:3080"
		ch, err := f.a.BeginAddMFADevice(ctx, c, wire.MFAAddRequest{Kind: "webauthn", Name: "evil"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.a.FinishAddMFADevice(ctx, c, wire.MFAAddFinish{ID: ch.ID, WebAuthn: other.create(ch.WebAuthn)})
		refused(t, "registration from another origin", err)
	})
	t.Run("user verification", func(t *testing.T) {
		key.uv = false
		defer func() { key.uv = true }()
		_, err := f.passwordless(key)
		refused(t, "passwordless without user verification", err)
	})
	t.Run("single use", func(t *testing.T) {
		ch, err := f.a.BeginPasskeyLogin(ctx, wire.PasskeyLoginBegin{})
		if err != nil {
			t.Fatal(err)
		}
		resp := key.get(ch.WebAuthn)
		if _, err := f.a.FinishPasskeyLogin(ctx, wire.PasskeyLoginFinish{ID: ch.ID, WebAuthn: resp, PublicKey: pubKey(t)}); err != nil {
			t.Fatal(err)
		}
		_, err = f.a.FinishPasskeyLogin(ctx, wire.PasskeyLoginFinish{ID: ch.ID, WebAuthn: key.get(ch.WebAuthn), PublicKey: pubKey(t)})
		refused(t, "a spent challenge", err)
	})
	t.Run("expiry", func(t *testing.T) {
		ch, err := f.a.BeginPasskeyLogin(ctx, wire.PasskeyLoginBegin{})
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(5*time.Minute + time.Second)
		_, err = f.a.FinishPasskeyLogin(ctx, wire.PasskeyLoginFinish{ID: ch.ID, WebAuthn: key.get(ch.WebAuthn), PublicKey: pubKey(t)})
		refused(t, "an expired challenge", err)
	})
	t.Run("counter regression", func(t *testing.T) {
		last := key.counter
		key.counter = 1 // get adds one: below the last seen
		_, err := f.passwordless(key)
		refused(t, "a counter that went backwards", err)
		evs := f.events(audit.Query{Type: audit.MFACounterRegression, User: "dev"})
		if len(evs) != 1 || evs[0].Success {
			t.Fatalf("counter regression events %+v", evs)
		}
		key.counter = last
		if _, err := f.passwordless(key); err != nil {
			t.Fatalf("a counter that went forward again: %v", err)
		}
	})
	t.Run("locked user", func(t *testing.T) {
		l, err := f.a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "dev"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.passwordless(key)
		if !errors.Is(err, auth.ErrAccessDenied) {
			t.Fatalf("a locked user signed in: %v", err)
		}
		if err := f.a.DeleteLock(ctx, auth.AdminCaller(), l.Lock.ID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("locked device", func(t *testing.T) {
		l, err := f.a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{MFADevice: laptop.ID}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.passwordless(key); !errors.Is(err, auth.ErrAccessDenied) {
			t.Fatalf("a locked device signed in: %v", err)
		}
		if err := f.a.DeleteLock(ctx, auth.AdminCaller(), l.Lock.ID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("removed device", func(t *testing.T) {
		// Never the last device.
		if err := f.a.DeleteMFADevice(ctx, c, "otp"); err != nil {
			t.Fatal(err)
		}
		if err := f.a.DeleteMFADevice(ctx, c, "laptop"); !errors.Is(err, auth.ErrBadRequest) || !strings.Contains(err.Error(), "only MFA device") {
			t.Fatalf("the last device was removed: %v", err)
		}
		other := newSoftKey(t)
		f.addPasskey(c, "phone", other)
		if err := f.a.DeleteMFADevice(ctx, c, "laptop"); err != nil {
			t.Fatal(err)
		}
		_, err := f.passwordless(key)
		refused(t, "a removed device", err)
		if _, err := f.passwordless(other); err != nil {
			t.Fatal(err)
		}
		if evs := f.events(audit.Query{Type: audit.MFADelete, User: "dev"}); len(evs) != 2 {
			t.Fatalf("mfa.delete events %+v", evs)
		}
	})
	t.Run("removed user", func(t *testing.T) {
		if err := f.a.DeleteUser(ctx, auth.AdminCaller(), "dev"); err != nil {
			t.Fatal(err)
		}
		_, err := f.passwordless(key)
		refused(t, "a removed user", err)
	})
}

// TestPasskeyChallengesBounded: each passwordless challenge is stored
// until used or expired, so one address gets a bounded number of them.
func TestPasskeyChallengesBounded(t *testing.T) {
	f := passkeyFixture(t)
	ctx := context.Background()
	var err error
	n := 0
	for ; n < 100 && err == nil; n++ {
		_, err = f.a.BeginPasskeyLogin(ctx, wire.PasskeyLoginBegin{RemoteAddr: "192.0.2.7"})
	}
	if !errors.Is(err, auth.ErrThrottled) || n > 40 {
		t.Fatalf("after %d challenges: %v", n, err)
	}
	// Another address is not affected.
	if _, err := f.a.BeginPasskeyLogin(ctx, wire.PasskeyLoginBegin{RemoteAddr: "192.0.2.8"}); err != nil {
		t.Fatal(err)
	}
}

func TestRecoveryCodes(t *testing.T) {
	f := passkeyFixture(t)
	ctx := context.Background()
	secret := f.signup("dev", []string{"access"}, []string{"dev"})
	c := f.userCaller("dev", []string{"access"})
	// A fresh MFA check is required.
	if _, err := f.a.RegenerateRecoveryCodes(ctx, c, wire.MFAResponse{OTP: "000000"}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("recovery codes without MFA: %v", err)
	}
	rc, err := f.a.RegenerateRecoveryCodes(ctx, c, wire.MFAResponse{OTP: f.code(secret)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Codes) != 10 {
		t.Fatalf("%d codes", len(rc.Codes))
	}
	login := func(otp string) error {
		_, err := f.a.Login(ctx, auth.LoginRequest{User: "dev", Password: testPassword, OTP: otp, PublicKey: pubKey(t)})
		return err
	}
	if err := login(strings.ToUpper(rc.Codes[3])); err != nil {
		t.Fatalf("recovery code refused: %v", err)
	}
	if err := login(rc.Codes[3]); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("a recovery code worked twice: %v", err)
	}
	list, _ := f.a.ListMFADevices(ctx, c)
	if list.RecoveryCodesLeft != 9 {
		t.Fatalf("%d codes left", list.RecoveryCodesLeft)
	}
	// Stored hashed: no code appears in the user record.
	it, err := f.b.Get(ctx, "/users/dev")
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range rc.Codes {
		if strings.Contains(string(it.Value), code) || strings.Contains(string(it.Value), strings.ReplaceAll(code, "-", "")) {
			t.Fatal("a recovery code is stored in clear")
		}
	}
	// Regenerating with a recovery code voids the old set.
	f.clock.Advance(30 * time.Second)
	rc2, err := f.a.RegenerateRecoveryCodes(ctx, c, wire.MFAResponse{OTP: rc.Codes[0]})
	if err != nil {
		t.Fatal(err)
	}
	if err := login(rc.Codes[1]); err == nil {
		t.Fatal("an old recovery code worked after regeneration")
	}
	if err := login(rc2.Codes[1]); err != nil {
		t.Fatal(err)
	}
	if evs := f.events(audit.Query{Type: audit.MFARecoveryCodes, User: "dev"}); len(evs) != 2 {
		t.Fatalf("mfa.recovery_codes events: %d", len(evs))
	}
}

func TestPasskeyHandoff(t *testing.T) {
	f := passkeyFixture(t)
	ctx := context.Background()
	f.signup("dev", []string{"access"}, []string{"dev"})
	key := newSoftKey(t)
	f.addPasskey(f.userCaller("dev", []string{"access"}), "laptop", key)
	if _, err := f.a.BeginPasskeyHandoff(ctx, wire.PasskeyHandoffBegin{PublicKey: pubKey(t), ClientRedirect: "http://evil.example/cb"}); !errors.Is(err, auth.ErrBadRequest) {
		t.Fatalf("a non-loopback callback: %v", err)
	}
	h, err := f.a.BeginPasskeyHandoff(ctx, wire.PasskeyHandoffBegin{PublicKey: pubKey(t), ClientRedirect: "http://127.0.0.1:5555/callback"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(h.URL)
	if err != nil || u.Host != "proxy:3080" || u.Path != "/web/login/passkey" {
		t.Fatalf("hand-off URL %q", h.URL)
	}
	state := u.Query().Get("state")
	ch, err := f.a.BeginPasskeyLogin(ctx, wire.PasskeyLoginBegin{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.a.FinishPasskeyLogin(ctx, wire.PasskeyLoginFinish{ID: ch.ID, WebAuthn: key.get(ch.WebAuthn), State: state})
	if err != nil {
		t.Fatal(err)
	}
	back, err := url.Parse(res.Redirect)
	if err != nil || res.Login != nil || !strings.HasPrefix(res.Redirect, "http://127.0.0.1:5555/callback?") || back.Query().Get("id") != h.ID {
		t.Fatalf("hand-off result %+v", res)
	}
	code := back.Query().Get("code")
	if _, err := f.a.ResultPasskey(ctx, wire.PasskeyResultRequest{ID: h.ID, ResultToken: "wrong", Code: code}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("wrong result token: %v", err)
	}
	// Whoever began the sign-in and sent the link to someone else has the
	// id and the result token, not the code their browser brought back.
	if _, err := f.a.ResultPasskey(ctx, wire.PasskeyResultRequest{ID: h.ID, ResultToken: h.ResultToken}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("no callback code: %v", err)
	}
	login, err := f.a.ResultPasskey(ctx, wire.PasskeyResultRequest{ID: h.ID, ResultToken: h.ResultToken, Code: code})
	if err != nil || login.User != "dev" {
		t.Fatalf("result: %v", err)
	}
	if _, err := f.a.ResultPasskey(ctx, wire.PasskeyResultRequest{ID: h.ID, ResultToken: h.ResultToken, Code: code}); err == nil {
		t.Fatal("the result was fetched twice")
	}
	// A refused passkey: the browser still goes back to the CLI, which
	// gets the reason.
	h2, err := f.a.BeginPasskeyHandoff(ctx, wire.PasskeyHandoffBegin{PublicKey: pubKey(t), ClientRedirect: "http://127.0.0.1:5555/callback"})
	if err != nil {
		t.Fatal(err)
	}
	u2, _ := url.Parse(h2.URL)
	stranger := newSoftKey(t)
	stranger.handle = []byte("not a user of this cluster")
	ch2, _ := f.a.BeginPasskeyLogin(ctx, wire.PasskeyLoginBegin{})
	res2, err := f.a.FinishPasskeyLogin(ctx, wire.PasskeyLoginFinish{ID: ch2.ID, WebAuthn: stranger.get(ch2.WebAuthn), State: u2.Query().Get("state")})
	if err == nil || res2 == nil || res2.Redirect == "" {
		t.Fatalf("a stranger's passkey: %+v, %v", res2, err)
	}
	back2, _ := url.Parse(res2.Redirect)
	if _, err := f.a.ResultPasskey(ctx, wire.PasskeyResultRequest{ID: h2.ID, ResultToken: h2.ResultToken, Code: back2.Query().Get("code")}); err == nil ||
		!strings.Contains(err.Error(), "not registered here") {
		t.Fatalf("the CLI's outcome of a refused passkey: %v", err)
	}

	// The state is single use.
	ch, _ = f.a.BeginPasskeyLogin(ctx, wire.PasskeyLoginBegin{})
	if _, err := f.a.FinishPasskeyLogin(ctx, wire.PasskeyLoginFinish{ID: ch.ID, WebAuthn: key.get(ch.WebAuthn), State: state}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("a spent state: %v", err)
	}
}

func TestRequirePasskey(t *testing.T) {
	f := passkeyFixture(t, func(c *auth.Config) { c.RequirePasskey = true })
	ctx := context.Background()
	secret := f.signup("dev", []string{"access"}, []string{"dev"})
	_, err := f.a.Login(ctx, auth.LoginRequest{User: "dev", Password: testPassword, OTP: f.code(secret), PublicKey: pubKey(t)})
	var enrol *auth.PasskeyEnrolment
	if !errors.As(err, &enrol) || !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("password+TOTP without a passkey: %v", err)
	}
	// The enrolment token registers a passkey, once.
	key := newSoftKey(t)
	ch, err := f.a.BeginEnrolPasskey(ctx, enrol.Token, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.BeginEnrolPasskey(ctx, enrol.Token, "again"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("enrolment token used twice: %v", err)
	}
	if _, err := f.a.FinishEnrolPasskey(ctx, wire.MFAAddFinish{ID: ch.ID, WebAuthn: key.create(ch.WebAuthn)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.passwordless(key); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * time.Second)
	_, err = f.a.Login(ctx, auth.LoginRequest{User: "dev", Password: testPassword, OTP: f.code(secret), PublicKey: pubKey(t)})
	if !errors.Is(err, auth.ErrAccessDenied) || errors.As(err, &enrol) || !strings.Contains(err.Error(), "requires a passkey") {
		t.Fatalf("password+TOTP with a passkey: %v", err)
	}
	// The last passkey stays.
	c := f.userCaller("dev", []string{"access"})
	if err := f.a.DeleteMFADevice(ctx, c, "laptop"); !errors.Is(err, auth.ErrBadRequest) {
		t.Fatalf("the only passkey removed: %v", err)
	}
}

// TestMFAHandoff: a fresh MFA check with a passkey, made in a browser for
// the CLI, gives a single-use token its next call carries.
func TestMFAHandoff(t *testing.T) {
	f := passkeyFixture(t)
	ctx := context.Background()
	f.signup("dev", []string{"access"}, []string{"dev"})
	c := f.userCaller("dev", []string{"access"})
	key := newSoftKey(t)
	laptop := f.addPasskey(c, "laptop", key)
	h, err := f.a.BeginMFAHandoff(ctx, c, wire.PasskeyHandoffBegin{ClientRedirect: "http://127.0.0.1:5555/callback"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(h.URL)
	state := u.Query().Get("state")
	if u.Path != "/web/mfa" || state == "" {
		t.Fatalf("MFA page %q", h.URL)
	}
	// A sign-in cannot use an MFA check's state.
	if _, err := f.a.FinishPasskeyLogin(ctx, wire.PasskeyLoginFinish{ID: "x", State: state}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("an MFA state as a sign-in: %v", err)
	}
	ch, err := f.a.BeginHandoffMFAChallenge(ctx, state)
	if err != nil || ch.WebAuthn == nil {
		t.Fatalf("challenge: %+v %v", ch, err)
	}
	res, err := f.a.FinishMFAHandoff(ctx, state, wire.MFAResponse{ChallengeID: ch.ID, WebAuthn: key.get(ch.WebAuthn)})
	if err != nil {
		t.Fatal(err)
	}
	back, _ := url.Parse(res.Redirect)
	if _, err := f.a.ResultMFAHandoff(ctx, wire.PasskeyResultRequest{ID: h.ID, ResultToken: h.ResultToken}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("without the callback code: %v", err)
	}
	tok, err := f.a.ResultMFAHandoff(ctx, wire.PasskeyResultRequest{ID: h.ID, ResultToken: h.ResultToken, Code: back.Query().Get("code")})
	if err != nil || tok.Token == "" {
		t.Fatalf("result: %+v %v", tok, err)
	}
	// Another user cannot spend it.
	f.signup("eve", []string{"access"}, []string{"eve"})
	if _, err := f.a.VerifyMFA(ctx, f.userCaller("eve", []string{"access"}), *tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("another user's MFA token: %v", err)
	}
	// It was spent by that refusal (single use): a new check for dev.
	h, _ = f.a.BeginMFAHandoff(ctx, c, wire.PasskeyHandoffBegin{ClientRedirect: "http://127.0.0.1:5555/callback"})
	u, _ = url.Parse(h.URL)
	ch, _ = f.a.BeginHandoffMFAChallenge(ctx, u.Query().Get("state"))
	res, err = f.a.FinishMFAHandoff(ctx, u.Query().Get("state"), wire.MFAResponse{ChallengeID: ch.ID, WebAuthn: key.get(ch.WebAuthn)})
	if err != nil {
		t.Fatal(err)
	}
	back, _ = url.Parse(res.Redirect)
	tok, err = f.a.ResultMFAHandoff(ctx, wire.PasskeyResultRequest{ID: h.ID, ResultToken: h.ResultToken, Code: back.Query().Get("code")})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := f.a.RegenerateRecoveryCodes(ctx, c, *tok)
	if err != nil || len(rc.Codes) != 10 {
		t.Fatalf("recovery codes with the token: %v", err)
	}
	if _, err := f.a.RegenerateRecoveryCodes(ctx, c, *tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("a spent MFA token: %v", err)
	}
	evs := f.events(audit.Query{Type: audit.MFAVerify, User: "dev"})
	if len(evs) == 0 || evs[len(evs)-1].Success || evs[len(evs)-2].Fields["mfa_device"] != laptop.ID {
		t.Fatalf("mfa.verify events %+v", evs)
	}
}

// TestRequirePasskeyWithoutRestart: require_passkey changed in the
// cluster settings applies at the next sign-in of the same running auth:
// on, a password+TOTP sign-in is
// refused for want of a passkey; off again, it works. Audited.
func TestRequirePasskeyWithoutRestart(t *testing.T) {
	f := passkeyFixture(t)
	ctx := context.Background()
	secret := f.signup("dev", []string{"access"}, []string{"dev"})
	login := func() error {
		f.clock.Advance(30 * time.Second) // a fresh TOTP step
		_, err := f.a.Login(ctx, auth.LoginRequest{User: "dev", Password: testPassword, OTP: f.code(secret), PublicKey: pubKey(t)})
		return err
	}
	if err := login(); err != nil {
		t.Fatalf("before: %v", err)
	}
	set := func(on bool) *wire.ClusterSettingsView {
		t.Helper()
		v, err := f.a.UpdateClusterSettings(ctx, auth.AdminCaller(), wire.ClusterSettings{RequirePasskey: &on})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := set(true); !v.Effective.RequirePasskey || v.Stored.RequirePasskey == nil {
		t.Fatalf("settings after on: %+v", v)
	}
	var enrol *auth.PasskeyEnrolment
	if err := login(); !errors.As(err, &enrol) {
		t.Fatalf("password+TOTP with require_passkey set at run time: %v", err)
	}
	devs, err := f.a.ListMFADevices(ctx, f.userCaller("dev", []string{"access"}))
	if err != nil || !devs.PasskeyRequired {
		t.Fatalf("the Security page's view: %+v %v", devs, err)
	}
	set(false)
	if err := login(); err != nil {
		t.Fatalf("after turning it off: %v", err)
	}
	if _, err := f.a.UpdateClusterSettings(ctx, auth.AdminCaller(), wire.ClusterSettings{}); !errors.Is(err, auth.ErrBadRequest) {
		t.Fatalf("no setting: %v", err)
	}
	evs, err := f.a.SearchAudit(ctx, auth.AdminCaller(), audit.Query{Type: audit.ClusterSettingsUpdate})
	if err != nil || len(evs) != 2 || evs[0].Fields["require_passkey"] != true || evs[0].User == "" {
		t.Fatalf("audit: %+v %v", evs, err)
	}
}
