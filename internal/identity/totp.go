package identity

import (
	"bytes"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters: what every authenticator app supports.
const (
	TOTPPeriod = 30 * time.Second
	TOTPDigits = 6
	totpSkew   = 1 // steps accepted either side of the current one
	totpQRSize = 256
)

// TOTP verification errors. The distinction is for the audit log, and for
// a client that has proved the password: only to it may a caller say that a
// code was already used (auth.Server.Login).
var (
	ErrTOTPInvalid  = errors.New("invalid TOTP code")
	ErrTOTPReplayed = errors.New("TOTP code already used")
)

var totpOpts = totp.ValidateOpts{
	Period:    uint(TOTPPeriod / time.Second),
	Digits:    otp.DigitsSix,
	Algorithm: otp.AlgorithmSHA1,
}

// NewTOTP makes a new random TOTP secret (160 bits, SHA1, 6 digits, 30 s)
// and returns it with its otpauth:// URL and the URL as a QR code PNG.
func NewTOTP(issuer, account string) (secret, url string, pngImage []byte, err error) {
	if issuer == "" || account == "" {
		return "", "", nil, errors.New("new totp: issuer and account are required")
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      totpOpts.Period,
		SecretSize:  20,
		Digits:      totpOpts.Digits,
		Algorithm:   totpOpts.Algorithm,
	})
	if err != nil {
		return "", "", nil, fmt.Errorf("new totp for %q: %w", account, err)
	}
	img, err := key.Image(totpQRSize, totpQRSize)
	if err != nil {
		return "", "", nil, fmt.Errorf("new totp for %q: qr image: %w", account, err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", "", nil, fmt.Errorf("new totp for %q: encode png: %w", account, err)
	}
	return key.Secret(), key.URL(), buf.Bytes(), nil
}

// checkTOTPSecret refuses secrets that are not base32 or too short to be
// ours; the otp library would happily use an empty HMAC key.
func checkTOTPSecret(secret string) error {
	s := strings.ToUpper(strings.TrimRight(strings.TrimSpace(secret), "="))
	b, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil {
		return errors.New("totp secret is not valid base32")
	}
	if len(b) < 10 {
		return fmt.Errorf("totp secret is %d bytes; at least 10 are required", len(b))
	}
	return nil
}

// TOTPCode returns the code for secret at t.
func TOTPCode(secret string, t time.Time) (string, error) {
	if err := checkTOTPSecret(secret); err != nil {
		return "", fmt.Errorf("totp code: %w", err)
	}
	code, err := totp.GenerateCodeCustom(secret, t, totpOpts)
	if err != nil {
		return "", fmt.Errorf("totp code: %w", err)
	}
	return code, nil
}

// TOTPStep returns the TOTP time step that contains t.
func TOTPStep(t time.Time) int64 {
	return t.Unix() / int64(TOTPPeriod/time.Second)
}

// VerifyTOTP checks code against secret at now, accepting the current time
// step and one either side for clock skew. It returns the matched step,
// which the caller must store as the user's new TOTPLastStep. A code whose
// step is at or before lastStep is refused with ErrTOTPReplayed; any other
// mismatch is ErrTOTPInvalid.
func VerifyTOTP(secret, code string, lastStep int64, now time.Time) (step int64, err error) {
	if err := checkTOTPSecret(secret); err != nil {
		return 0, fmt.Errorf("verify totp: %w", err)
	}
	code = strings.TrimSpace(code)
	if len(code) != TOTPDigits || strings.Trim(code, "0123456789") != "" {
		return 0, ErrTOTPInvalid
	}
	current := TOTPStep(now)
	replayed := false
	for s := current - totpSkew; s <= current+totpSkew; s++ {
		if s < 0 {
			continue
		}
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*int64(totpOpts.Period), 0), totpOpts)
		if err != nil {
			return 0, fmt.Errorf("verify totp: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) != 1 {
			continue
		}
		if s <= lastStep {
			replayed = true
			continue
		}
		return s, nil
	}
	if replayed {
		return 0, ErrTOTPReplayed
	}
	return 0, ErrTOTPInvalid
}
