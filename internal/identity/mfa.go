package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MFA device kinds.
const (
	DeviceTOTP     = "totp"
	DeviceWebAuthn = "webauthn"
)

// MaxDevices bounds a user's MFA devices.
const MaxDevices = 32

// MFADevice is one second factor of a user: a TOTP authenticator or a
// WebAuthn credential (passkey or security key). Its ID names it in
// certificates, audit events and locks; its Name is the user's.
type MFADevice struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	LastUsed  time.Time `json:"last_used,omitzero"`
	// TOTP: the secret and the last accepted time step (replay guard).
	TOTPSecret   string `json:"totp_secret,omitempty"`
	TOTPLastStep int64  `json:"totp_last_step,omitempty"`
	// WebAuthn: the credential id (for lookups), the credential record
	// the WebAuthn library keeps (public key, sign counter, flags), and
	// whether it was registered as a discoverable credential with user
	// verification (a passkey: it can sign in without a password).
	CredentialID []byte          `json:"credential_id,omitempty"`
	WebAuthn     json.RawMessage `json:"webauthn,omitempty"`
	Passkey      bool            `json:"passkey,omitempty"`
}

// ValidateDeviceName checks a device name: 1 to 64 letters, digits and
// ".-_@ ", not starting or ending with a space.
func ValidateDeviceName(name string) error {
	if name == "" || len(name) > 64 || strings.TrimSpace(name) != name {
		return errors.New("a device name has 1 to 64 characters and no leading or trailing space")
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".-_@ ", r):
		default:
			return fmt.Errorf("device name %q: only letters, digits, spaces and .-_@ are allowed", name)
		}
	}
	return nil
}

// NewDeviceID returns a new id for an MFA device of kind: the kind, a
// dash and 16 hex digits.
func NewDeviceID(kind string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new MFA device id: %w", err)
	}
	return kind + "-" + hex.EncodeToString(b), nil
}

// MigrateDevices moves the TOTP secret of a record written before devices
// were a list (TOTPSecret, MFADevice) into Devices, as a device named
// "otp". It reports whether it changed anything.
func (u *User) MigrateDevices() bool {
	if u.TOTPSecret == "" {
		return false
	}
	id := u.MFADevice
	if id == "" {
		id, _ = NewDeviceID(DeviceTOTP)
		u.MFADevice = id
	}
	u.Devices = append([]MFADevice{{ID: id, Name: "otp", Kind: DeviceTOTP, CreatedAt: u.UpdatedAt,
		TOTPSecret: u.TOTPSecret, TOTPLastStep: u.TOTPLastStep}}, u.Devices...)
	u.TOTPSecret, u.TOTPLastStep = "", 0
	return true
}

// HasMFA reports whether the user has a second factor.
func (u *User) HasMFA() bool { return len(u.Devices) > 0 || u.TOTPSecret != "" }

// DeviceByName returns the index of the device with this name or id, or -1.
func (u *User) DeviceByName(name string) int {
	for i, d := range u.Devices {
		if d.Name == name || d.ID == name {
			return i
		}
	}
	return -1
}

// Count returns how many devices of kind the user has (passkeys only:
// those that sign in without a password).
func (u *User) Count(kind string, passkeysOnly bool) int {
	n := 0
	for _, d := range u.Devices {
		if d.Kind == kind && (!passkeysOnly || d.Passkey) {
			n++
		}
	}
	return n
}

// VerifyTOTPDevices checks code against each TOTP device of the user. On
// success it stores the new step in the device and returns its index.
// ErrTOTPReplayed if the code matched a device only at a spent step.
func (u *User) VerifyTOTPDevices(code string, now time.Time) (int, error) {
	err := ErrTOTPInvalid
	for i := range u.Devices {
		d := &u.Devices[i]
		if d.Kind != DeviceTOTP {
			continue
		}
		step, e := VerifyTOTP(d.TOTPSecret, code, d.TOTPLastStep, now)
		if e == nil {
			d.TOTPLastStep = step
			return i, nil
		}
		if errors.Is(e, ErrTOTPReplayed) {
			err = e
		}
	}
	return -1, err
}

// Recovery codes: RecoveryCodeCount codes of 20 base32 characters (100
// random bits), shown once. Each is kept as HMAC-SHA-256 keyed with a
// random per-user key: a code with 100 bits of entropy cannot be found
// from its hash by trying, so a slow hash (argon2id) would only cost
// every check time; the key stops precomputation across users and
// clusters. A used code's hash is cleared.
const (
	RecoveryCodeCount = 10
	recoveryCodeChars = 20
)

// RecoveryCodes is what a user record keeps of its recovery codes.
type RecoveryCodes struct {
	Key       []byte    `json:"key"`
	Hashes    []string  `json:"hashes"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// Left returns how many codes are unused.
func (r *RecoveryCodes) Left() int {
	if r == nil {
		return 0
	}
	n := 0
	for _, h := range r.Hashes {
		if h != "" {
			n++
		}
	}
	return n
}

var recoveryEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewRecoveryCodes makes a fresh set: the codes to show (xxxxx-xxxxx-
// xxxxx-xxxxx, lower case) and what to keep.
func NewRecoveryCodes(now time.Time) ([]string, *RecoveryCodes, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, nil, err
	}
	rc := &RecoveryCodes{Key: key, CreatedAt: now}
	codes := make([]string, RecoveryCodeCount)
	for i := range codes {
		b := make([]byte, recoveryCodeChars*5/8)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, err
		}
		s := strings.ToLower(recoveryEncoding.EncodeToString(b))
		codes[i] = s[0:5] + "-" + s[5:10] + "-" + s[10:15] + "-" + s[15:20]
		rc.Hashes = append(rc.Hashes, rc.hash(codes[i]))
	}
	return codes, rc, nil
}

// normalizeRecoveryCode drops dashes and spaces and lower-cases.
func normalizeRecoveryCode(code string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, code)
}

// LooksLikeRecoveryCode tells a recovery code from a TOTP code.
func LooksLikeRecoveryCode(code string) bool {
	return len(normalizeRecoveryCode(code)) == recoveryCodeChars
}

func (r *RecoveryCodes) hash(code string) string {
	m := hmac.New(sha256.New, r.Key)
	m.Write([]byte(normalizeRecoveryCode(code)))
	return hex.EncodeToString(m.Sum(nil))
}

// Use spends code: it reports whether it was an unused code of the set,
// and clears it if so (the caller stores the record).
func (r *RecoveryCodes) Use(code string) bool {
	if r == nil || len(code) > 64 || !LooksLikeRecoveryCode(code) {
		return false
	}
	h := r.hash(code)
	found := -1
	for i, want := range r.Hashes {
		if want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(h)) == 1 {
			found = i
		}
	}
	if found < 0 {
		return false
	}
	r.Hashes[found] = ""
	return true
}
