package auth_test

import (
	"context"
	//lint:ignore SA1019 to prove DSA keys are refused
	"crypto/dsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/identity"
)

const goodPassword = "a good long password"

func (f *fixture) login(remote, user, pw, otp string) error {
	f.t.Helper()
	_, err := f.a.Login(context.Background(), auth.LoginRequest{User: user, Password: pw, OTP: otp, PublicKey: pubKey(f.t), RemoteAddr: remote})
	return err
}

// TestLoginAnswersAlikeWhoeverTheUser: an unknown user, an invited user who
// has not signed up and an existing user with a wrong password or code get
// the same answer after the same work (one password hash, no write), so
// neither the words nor the time tell them apart.
func TestLoginAnswersAlikeWhoeverTheUser(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret := f.signup("dev", []string{"access"}, []string{"dev"})
	if _, err := f.a.CreateUser(ctx, auth.AdminCaller(), auth.CreateUserRequest{Name: "invited", Roles: []string{"access"}}); err != nil {
		t.Fatal(err)
	}
	var hashes atomic.Int64
	auth.CountPasswordChecks(f.a, &hashes)
	revision := func(user string) int64 {
		it, err := f.b.Get(ctx, "/users/"+user)
		if err != nil {
			return 0
		}
		return it.Revision
	}
	for _, tc := range []struct{ name, user, pw, otp string }{
		{"unknown user", "nobody", goodPassword, f.code(secret)},
		{"invited, not signed up", "invited", goodPassword, f.code(secret)},
		{"wrong password", "dev", "wrong password!!", f.code(secret)},
		{"wrong code", "dev", goodPassword, "000000"},
	} {
		before, rev := hashes.Load(), revision(tc.user)
		err := f.login("192.0.2.1", tc.user, tc.pw, tc.otp)
		if err == nil || err.Error() != "authentication failed" || !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: answer %v, want just %q", tc.name, err, "authentication failed")
		}
		if n := hashes.Load() - before; n != 1 {
			t.Errorf("%s: %d password hashes checked, want 1 as for any user", tc.name, n)
		}
		if revision(tc.user) != rev {
			t.Errorf("%s: a failed login wrote the user record", tc.name)
		}
	}
}

// TestLoginThrottle: failures are throttled per address and per address
// and user name, the same for names that exist and names that do not, and
// never by locking the account: its owner logs in from elsewhere.
func TestLoginThrottle(t *testing.T) {
	f := newFixture(t)
	secret := f.signup("dev", []string{"access"}, []string{"dev"})
	var hashes atomic.Int64
	auth.CountPasswordChecks(f.a, &hashes)
	const attacker = "203.0.113.7"
	throttled := func(user string) error {
		t.Helper()
		for i := range auth.DefaultAccountLimit.Burst {
			if err := f.login(attacker, user, "wrong password!!", "000000"); !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("failure %d for %s: %v", i+1, user, err)
			}
		}
		before := hashes.Load()
		// Even the right password is refused now, before any hash work.
		err := f.login(attacker, user, goodPassword, f.code(secret))
		var te *identity.ThrottledError
		if !errors.Is(err, auth.ErrThrottled) || !errors.As(err, &te) || te.RetryAfter <= 0 {
			t.Fatalf("attempt %d for %s: %v, want throttled", auth.DefaultAccountLimit.Burst+1, user, err)
		}
		if hashes.Load() != before {
			t.Fatalf("a throttled attempt checked a password")
		}
		return err
	}
	errDev := throttled("dev")
	errGhost := throttled("ghost")
	if errDev.Error() != errGhost.Error() {
		t.Fatalf("throttled answers differ for an existing and an unknown user: %q, %q", errDev, errGhost)
	}
	// The victim is not locked out: from their own address they log in.
	if err := f.login("198.51.100.20", "dev", goodPassword, f.code(secret)); err != nil {
		t.Fatalf("someone else's failures locked dev out: %v", err)
	}
	// A burst over many names from one address: 20 failures are answered
	// in all (10 above), the rest refused.
	answered := 2 * auth.DefaultAccountLimit.Burst
	for i := range 60 {
		err := f.login(attacker, fmt.Sprint("user", i), "wrong password!!", "000000")
		if errors.Is(err, auth.ErrThrottled) {
			break
		}
		answered++
	}
	if answered != auth.DefaultSourceLimit.Burst {
		t.Fatalf("%d failures from one address answered, want %d", answered, auth.DefaultSourceLimit.Burst)
	}
	// IPv6 addresses are grouped by /64: the next address along is the
	// same source.
	for range auth.DefaultAccountLimit.Burst {
		_ = f.login("2001:db8:1:2::1", "dev", "wrong password!!", "000000")
	}
	if err := f.login("2001:db8:1:2::99", "dev", goodPassword, "000000"); !errors.Is(err, auth.ErrThrottled) {
		t.Fatalf("another address of the same /64: %v, want throttled", err)
	}
	// Waiting restores attempts.
	f.clock.Advance(auth.DefaultSourceLimit.MaxWait)
	if err := f.login(attacker, "dev", goodPassword, f.code(secret)); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
	// Each burst of refusals is audited once per key, not per request.
	var got []string
	for _, ev := range f.events(audit.Query{Type: audit.LoginThrottled}) {
		got = append(got, fmt.Sprintf("%s %s %v %v", ev.RemoteAddr, ev.User, ev.Fields["scope"], ev.Fields["endpoint"]))
	}
	want := []string{
		attacker + " dev address+account login",
		attacker + " ghost address+account login",
		fmt.Sprintf("%s user%d address login", attacker, auth.DefaultSourceLimit.Burst-2*auth.DefaultAccountLimit.Burst),
		"2001:db8:1:2::99 dev address+account login",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("user.login_throttled events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLoginBurstFromOneAddress: 60 failed logins sent at once from one
// address (as in the hostile test) get 20 answers after a password hash,
// and the rest a refusal without one.
func TestLoginBurstFromOneAddress(t *testing.T) {
	f := newFixture(t)
	var hashes atomic.Int64
	auth.CountPasswordChecks(f.a, &hashes)
	errs := make(chan error, 60)
	for i := range 60 {
		req := auth.LoginRequest{User: fmt.Sprint("user", i), Password: "wrong password!!", OTP: "000000",
			PublicKey: pubKey(t), RemoteAddr: "203.0.113.50"}
		go func() {
			_, err := f.a.Login(context.Background(), req)
			errs <- err
		}()
	}
	answered := 0
	for range 60 {
		switch err := <-errs; {
		case errors.Is(err, auth.ErrUnauthenticated):
			answered++
		case errors.Is(err, auth.ErrThrottled):
		default:
			t.Errorf("answer %v, want authentication failed or throttled", err)
		}
	}
	if answered != auth.DefaultSourceLimit.Burst || hashes.Load() != int64(answered) {
		t.Fatalf("%d answered after %d hashes, want %d", answered, hashes.Load(), auth.DefaultSourceLimit.Burst)
	}
}

func weakKeys(t *testing.T) map[string]string {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := ssh.NewPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// A 1024-bit P and 160-bit Q make a DSA public key SSH parses (the only
	// sizes it takes); nothing here needs it to be a real one.
	p := new(big.Int).SetBit(big.NewInt(1), 1023, 1)
	q := new(big.Int).SetBit(big.NewInt(1), 159, 1)
	dk := &dsa.PublicKey{Parameters: dsa.Parameters{P: p, Q: q, G: big.NewInt(2)}, Y: big.NewInt(3)}
	dsaPub, err := ssh.NewPublicKey(dk)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"RSA key of 1024 bits refused: at least 2048 are required": string(ssh.MarshalAuthorizedKey(rsaPub)),
		"DSA keys are refused": string(ssh.MarshalAuthorizedKey(dsaPub)),
	}
}

// TestLoginRefusesWeakKeysBeforeSpendingTheCode: a key auth would not sign
// is refused with the reason (400), before the password and TOTP code are
// checked, so the same code still logs in with a good key.
func TestLoginRefusesWeakKeysBeforeSpendingTheCode(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret := f.signup("dev", []string{"access"}, []string{"dev"})
	code := f.code(secret)
	for reason, key := range weakKeys(t) {
		_, err := f.a.Login(ctx, auth.LoginRequest{User: "dev", Password: goodPassword, OTP: code, PublicKey: key})
		if !errors.Is(err, auth.ErrBadRequest) || !strings.Contains(err.Error(), reason) {
			t.Errorf("weak key: %v, want a bad request saying %q", err, reason)
		}
	}
	if err := f.login("", "dev", goodPassword, code); err != nil {
		t.Fatalf("the code was spent by a refused key: %v", err)
	}
}

// TestLoginSaysWhenTheCodeWasUsed: a spent code is named as such, but only
// to a client that gave the right password.
func TestLoginSaysWhenTheCodeWasUsed(t *testing.T) {
	f := newFixture(t)
	secret := f.signup("dev", []string{"access"}, []string{"dev"})
	code := f.code(secret)
	if err := f.login("", "dev", goodPassword, code); err != nil {
		t.Fatal(err)
	}
	if err := f.login("", "dev", "wrong password!!", code); err == nil || err.Error() != "authentication failed" {
		t.Fatalf("wrong password with a spent code: %v, want just %q", err, "authentication failed")
	}
	err := f.login("", "dev", goodPassword, code)
	if !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "this TOTP code was already used; wait for the next one") {
		t.Fatalf("spent code: %v", err)
	}
}

// TestSignupLogsIn: completing a signup with a public key returns
// certificates, so the code it spent is not needed for a login.
func TestSignupLogsIn(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	inv, err := f.a.CreateUser(ctx, auth.AdminCaller(), auth.CreateUserRequest{Name: "dev", Roles: []string{"access"}, Logins: []string{"dev"}})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := f.a.BeginSignup(ctx, auth.SignupRequest{Token: inv.Token})
	if err != nil {
		t.Fatal(err)
	}
	code := f.code(ch.Secret)
	for reason, key := range weakKeys(t) {
		_, err := f.a.CompleteSignup(ctx, auth.SignupRequest{Token: inv.Token, Password: goodPassword, OTP: code, PublicKey: key})
		if !errors.Is(err, auth.ErrBadRequest) || !strings.Contains(err.Error(), reason) {
			t.Fatalf("weak key at signup: %v, want a bad request saying %q", err, reason)
		}
	}
	resp, err := f.a.CompleteSignup(ctx, auth.SignupRequest{Token: inv.Token, Password: goodPassword, OTP: code, PublicKey: pubKey(t), RemoteAddr: "192.0.2.5"})
	if err != nil {
		t.Fatalf("signup with a good key after weak ones (the invite must be unused): %v", err)
	}
	if resp == nil || resp.User != "dev" || !strings.HasPrefix(resp.SSHCert, "ssh-ed25519-cert-v01@openssh.com ") || resp.TLSCert == "" ||
		strings.Join(resp.Logins, ",") != "dev" {
		t.Fatalf("signup response %+v, want certificates for dev", resp)
	}
	logins := f.events(audit.Query{Type: audit.UserLogin, User: "dev"})
	if len(logins) != 1 || !logins[0].Success || logins[0].Fields["method"] != "signup" || logins[0].RemoteAddr != "192.0.2.5" {
		t.Fatalf("user.login events %+v, want one success with method signup", logins)
	}
	if err := f.login("", "dev", goodPassword, code); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("login with the signup's code: %v", err)
	}
}

// TestSignupThrottlesInviteGuessing: unknown invite tokens count as
// failures of their address.
func TestSignupThrottlesInviteGuessing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	inv, err := f.a.CreateUser(ctx, auth.AdminCaller(), auth.CreateUserRequest{Name: "dev", Roles: []string{"access"}})
	if err != nil {
		t.Fatal(err)
	}
	const guesser = "203.0.113.9"
	for i := range auth.DefaultSourceLimit.Burst {
		_, err := f.a.BeginSignup(ctx, auth.SignupRequest{Token: fmt.Sprint("guess", i), RemoteAddr: guesser})
		if !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if _, err := f.a.BeginSignup(ctx, auth.SignupRequest{Token: inv.Token, RemoteAddr: guesser}); !errors.Is(err, auth.ErrThrottled) {
		t.Fatalf("after %d bad tokens: %v, want throttled", auth.DefaultSourceLimit.Burst, err)
	}
	if _, err := f.a.CompleteSignup(ctx, auth.SignupRequest{Token: inv.Token, RemoteAddr: guesser}); !errors.Is(err, auth.ErrThrottled) {
		t.Fatalf("complete after %d bad tokens: %v, want throttled", auth.DefaultSourceLimit.Burst, err)
	}
	if _, err := f.a.BeginSignup(ctx, auth.SignupRequest{Token: inv.Token, RemoteAddr: "198.51.100.1"}); err != nil {
		t.Fatalf("the invite's owner, elsewhere: %v", err)
	}
	evs := f.events(audit.Query{Type: audit.LoginThrottled})
	if len(evs) != 1 || evs[0].Fields["endpoint"] != "signup" || evs[0].RemoteAddr != guesser {
		t.Fatalf("user.login_throttled events %+v, want one for the signup burst", evs)
	}
}
