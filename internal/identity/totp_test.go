package identity

import (
	"bytes"
	"errors"
	"image/png"
	"net/url"
	"strings"
	"testing"
	"time"
)

// RFC 6238 appendix B test secret ("12345678901234567890") in base32.
const rfcSecret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

func TestTOTPCodeRFC6238(t *testing.T) {
	t.Parallel()
	// RFC 6238 SHA1 vectors, last six digits.
	tests := []struct {
		unix int64
		want string
	}{
		{59, "287082"},
		{1111111109, "081804"},
		{1111111111, "050471"},
		{1234567890, "005924"},
		{2000000000, "279037"},
	}
	for _, tt := range tests {
		got, err := TOTPCode(rfcSecret, time.Unix(tt.unix, 0))
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("TOTPCode at %d = %s, want %s", tt.unix, got, tt.want)
		}
	}
}

func TestNewTOTP(t *testing.T) {
	t.Parallel()
	secret, u, pngBytes, err := NewTOTP("Warden example", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkTOTPSecret(secret); err != nil {
		t.Fatalf("generated secret %q: %v", secret, err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	if pu.Scheme != "otpauth" || pu.Host != "totp" || q.Get("secret") != secret ||
		q.Get("issuer") != "Warden example" || q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Errorf("unexpected otpauth URL %q", u)
	}
	if !strings.Contains(pu.Path, "alice") {
		t.Errorf("URL path %q does not name the account", pu.Path)
	}
	img, err := png.Decode(bytes.NewReader(pngBytes))
	if err != nil {
		t.Fatalf("QR is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != totpQRSize || b.Dy() != totpQRSize {
		t.Errorf("QR size %v", b)
	}
	secret2, _, _, err := NewTOTP("Warden example", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if secret == secret2 {
		t.Error("two secrets are equal")
	}
	if _, _, _, err := NewTOTP("", "alice"); err == nil {
		t.Error("NewTOTP with empty issuer succeeded")
	}
}

func TestVerifyTOTP(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 15, 0, time.UTC)
	step := TOTPStep(now)
	code := func(s int64) string {
		c, err := TOTPCode(rfcSecret, time.Unix(s*30, 0))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name     string
		code     string
		lastStep int64
		wantStep int64
		wantErr  error
	}{
		{"current", code(step), 0, step, nil},
		{"current with spaces", " " + code(step) + "\n", 0, step, nil},
		{"previous step (skew)", code(step - 1), 0, step - 1, nil},
		{"next step (skew)", code(step + 1), 0, step + 1, nil},
		{"two steps old", code(step - 2), 0, 0, ErrTOTPInvalid},
		{"two steps ahead", code(step + 2), 0, 0, ErrTOTPInvalid},
		{"replay of current", code(step), step, 0, ErrTOTPReplayed},
		{"older than last accepted", code(step - 1), step, 0, ErrTOTPReplayed},
		{"newer than last accepted", code(step + 1), step, step + 1, nil},
		{"wrong", wrongCode(code(step), code(step-1), code(step+1)), 0, 0, ErrTOTPInvalid},
		{"empty", "", 0, 0, ErrTOTPInvalid},
		{"five digits", code(step)[:5], 0, 0, ErrTOTPInvalid},
		{"seven digits", code(step) + "0", 0, 0, ErrTOTPInvalid},
		{"letters", "abcdef", 0, 0, ErrTOTPInvalid},
		{"signed", "+" + code(step)[1:], 0, 0, ErrTOTPInvalid},
	}
	for _, tt := range tests {
		got, err := VerifyTOTP(rfcSecret, tt.code, tt.lastStep, now)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("%s: VerifyTOTP error = %v, want %v", tt.name, err, tt.wantErr)
			continue
		}
		if got != tt.wantStep {
			t.Errorf("%s: VerifyTOTP step = %d, want %d", tt.name, got, tt.wantStep)
		}
	}
}

func TestVerifyTOTPSequence(t *testing.T) {
	t.Parallel()
	secret, _, _, err := NewTOTP("Warden", "bob")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	var last int64
	c, _ := TOTPCode(secret, now)
	if last, err = VerifyTOTP(secret, c, last, now); err != nil {
		t.Fatal(err)
	}
	// The same code a few seconds later within the same step is a replay.
	if _, err := VerifyTOTP(secret, c, last, now.Add(5*time.Second)); !errors.Is(err, ErrTOTPReplayed) {
		t.Fatalf("second use = %v, want ErrTOTPReplayed", err)
	}
	// The next period's code is accepted.
	next := now.Add(TOTPPeriod)
	c2, _ := TOTPCode(secret, next)
	if last, err = VerifyTOTP(secret, c2, last, next); err != nil || last != TOTPStep(next) {
		t.Fatalf("next code = %d, %v", last, err)
	}
}

func TestVerifyTOTPBadSecret(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "AAAA", "not base32!", "GEZDGNBV"} {
		if _, err := VerifyTOTP(s, "123456", 0, time.Now()); err == nil || errors.Is(err, ErrTOTPInvalid) {
			t.Errorf("VerifyTOTP with secret %q = %v, want a secret error", s, err)
		}
		if _, err := TOTPCode(s, time.Now()); err == nil {
			t.Errorf("TOTPCode with secret %q succeeded", s)
		}
	}
	// Lower case and missing padding, as some apps show secrets, still work.
	if _, err := TOTPCode(strings.ToLower(rfcSecret[:32]), time.Now()); err != nil {
		t.Errorf("lower-case secret: %v", err)
	}
}

func wrongCode(avoid ...string) string {
	for _, c := range []string{"000000", "111111", "222222", "333333"} {
		ok := true
		for _, a := range avoid {
			if a == c {
				ok = false
			}
		}
		if ok {
			return c
		}
	}
	panic("unreachable")
}
