package wire

import (
	"encoding/json"
	"time"
)

// MFADevice is one of a user's MFA devices, as listed (no secret).
type MFADevice struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Passkey   bool      `json:"passkey,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// MFADevices is what ListMFADevices returns.
type MFADevices struct {
	Devices []MFADevice `json:"devices"`
	// RecoveryCodesLeft is how many unused recovery codes the user has.
	RecoveryCodesLeft int `json:"recovery_codes_left"`
	// PasskeyRequired: the cluster requires local users to have a passkey.
	PasskeyRequired bool `json:"passkey_required,omitempty"`
}

// MFAAddRequest starts adding a device: Kind "totp" or "webauthn".
type MFAAddRequest struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// MFAAddChallenge is the device's enrolment: for TOTP the secret (its
// otpauth URL and QR code), for WebAuthn the credential creation options
// for navigator.credentials.create.
type MFAAddChallenge struct {
	ID         string          `json:"id"`
	TOTPSecret string          `json:"totp_secret,omitempty"`
	TOTPURL    string          `json:"totp_url,omitempty"`
	QRPNG      []byte          `json:"qr_png,omitempty"`
	WebAuthn   json.RawMessage `json:"webauthn,omitempty"`
}

// MFAAddFinish completes an enrolment: a TOTP code from the new device,
// or the browser's attestation response.
type MFAAddFinish struct {
	ID       string          `json:"id"`
	OTP      string          `json:"otp,omitempty"`
	WebAuthn json.RawMessage `json:"webauthn,omitempty"`
}

// MFAChallenge is a fresh MFA check to answer: with a code of a TOTP
// device (TOTP), or with a WebAuthn device (the assertion options for
// navigator.credentials.get), or a recovery code where allowed.
type MFAChallenge struct {
	ID       string          `json:"id"`
	TOTP     bool            `json:"totp"`
	WebAuthn json.RawMessage `json:"webauthn,omitempty"`
}

// MFAResponse answers an MFAChallenge: OTP (a TOTP code, or a recovery
// code), or the WebAuthn assertion for the challenge ChallengeID, or the
// Token a passkey check in the browser gave the CLI (single use, minutes).
type MFAResponse struct {
	ChallengeID string          `json:"challenge_id,omitempty"`
	OTP         string          `json:"otp,omitempty"`
	WebAuthn    json.RawMessage `json:"webauthn,omitempty"`
	Token       string          `json:"token,omitempty"`
}

// MFAVerified names the device that answered a fresh MFA check.
type MFAVerified struct {
	Device string `json:"device"`
	Kind   string `json:"kind"`
}

// RecoveryCodes are new one-time recovery codes, shown once.
type RecoveryCodes struct {
	Codes []string `json:"codes"`
}

// PasskeyLoginBegin starts a WebAuthn sign-in. Without User it is
// passwordless (a discoverable credential, user verification required);
// with User and Password the passkey is the second factor.
type PasskeyLoginBegin struct {
	User       string `json:"user,omitempty"`
	Password   string `json:"password,omitempty"`
	RemoteAddr string `json:"-"`
}

// PasskeyLoginChallenge is the assertion options for
// navigator.credentials.get, and the id that finishes it.
type PasskeyLoginChallenge struct {
	ID       string          `json:"id"`
	WebAuthn json.RawMessage `json:"webauthn"`
}

// PasskeyLoginFinish completes a WebAuthn sign-in: the browser's
// assertion, and either the public key to certify or the State of a
// `warden login --passkey` hand-off (whose key the CLI gave).
type PasskeyLoginFinish struct {
	ID         string          `json:"id"`
	WebAuthn   json.RawMessage `json:"webauthn"`
	PublicKey  string          `json:"public_key,omitempty"`
	TTL        time.Duration   `json:"ttl,omitempty"`
	State      string          `json:"state,omitempty"`
	RemoteAddr string          `json:"-"`
	Via        string          `json:"-"`
}

// PasskeyLoginResult is a finished WebAuthn sign-in: the certificates, or
// for a hand-off where to send the browser (the CLI's loopback listener).
type PasskeyLoginResult struct {
	Login    *LoginResponse `json:"login,omitempty"`
	Redirect string         `json:"redirect,omitempty"`
}

// PasskeyHandoffBegin starts `warden login --passkey`: the CLI's public
// key and its loopback callback.
type PasskeyHandoffBegin struct {
	PublicKey      string        `json:"public_key"`
	ClientRedirect string        `json:"client_redirect"`
	TTL            time.Duration `json:"ttl,omitempty"`
	RemoteAddr     string        `json:"-"`
}

// PasskeyHandoff is the page to open in a browser, the login id and the
// token that fetches the outcome (only its hash is kept).
type PasskeyHandoff struct {
	URL         string `json:"url"`
	ID          string `json:"id"`
	ResultToken string `json:"result_token"`
}

// PasskeyResultRequest fetches a hand-off's outcome, once: the login id
// and result token the CLI got when it began, and the code the browser
// brought to its loopback callback. Both halves are needed: whoever began
// a sign-in and sent its link to someone else lacks the code.
type PasskeyResultRequest struct {
	ID          string `json:"id"`
	ResultToken string `json:"result_token"`
	Code        string `json:"code"`
	RemoteAddr  string `json:"-"`
}
