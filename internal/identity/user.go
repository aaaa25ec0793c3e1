package identity

import (
	"fmt"
	"log/slog"
	"time"
)

// User statuses.
const (
	// StatusPending is a user created by an admin who has not yet chosen a
	// password and enrolled a second factor.
	StatusPending = "pending"
	// StatusActive is a user who can log in.
	StatusActive = "active"
)

// User is a local Warden user. PasswordHash and TOTPSecret are secrets: they
// are serialised to JSON for storage but never printed by String, GoString or
// LogValue.
type User struct {
	Name         string              `json:"name"`
	Roles        []string            `json:"roles,omitempty"`
	Traits       map[string][]string `json:"traits,omitempty"`
	PasswordHash string              `json:"password_hash,omitempty"`
	TOTPSecret   string              `json:"totp_secret,omitempty"`
	// TOTPLastStep is the last accepted TOTP time step; codes for this step
	// or earlier are refused as replays.
	TOTPLastStep int64     `json:"totp_last_step,omitempty"`
	Status       string    `json:"status"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	UpdatedAt    time.Time `json:"updated_at,omitzero"`
	// CertsIssuedAfter voids every certificate issued up to it (by auth's
	// clock): set when the user is created, reset, or loses a role.
	// CreatedAt stands in when it is unset.
	CertsIssuedAfter time.Time `json:"certs_issued_after,omitzero"`
	// MFADevice is the id of the user's TOTP device, new at each signup.
	// Certificates carry it, so a lock on it cuts the logins made with it.
	MFADevice string `json:"mfa_device,omitempty"`
	// Type is "" for a local user (password and TOTP) and TypeSSO for a
	// user whose identity provider vouches for them: auth upserts the
	// record at every SSO login, with the roles and traits the connector
	// Connector mapped from the claims, and never gives it a password.
	Type      string `json:"type,omitempty"`
	Connector string `json:"connector,omitempty"`
	// Devices are the user's MFA devices (TOTP, WebAuthn), with names.
	// A record from before devices were a list keeps its one TOTP secret
	// in TOTPSecret until MigrateDevices moves it here.
	Devices []MFADevice `json:"devices,omitempty"`
	// WebAuthnID is the user handle passkeys carry (random, 32 bytes).
	WebAuthnID []byte `json:"webauthn_id,omitempty"`
	// Recovery are the one-time recovery codes (hashed).
	Recovery *RecoveryCodes `json:"recovery,omitempty"`
}

// TypeSSO marks a user record made by single sign-on.
const TypeSSO = "sso"

// CertCurrent reports whether a certificate of the user issued at issued is
// still valid as far as the user record goes: issued after the user was
// created, last reset and last lost a role.
func (u *User) CertCurrent(issued time.Time) bool {
	after := u.CertsIssuedAfter
	if u.CreatedAt.After(after) {
		after = u.CreatedAt
	}
	return issued.After(after)
}

// Validate checks the fields a stored user must have right.
func (u *User) Validate() error {
	if err := ValidateUsername(u.Name); err != nil {
		return err
	}
	switch u.Status {
	case StatusPending, StatusActive:
	default:
		return fmt.Errorf("user %q: status %q is not %q or %q", u.Name, u.Status, StatusPending, StatusActive)
	}
	for _, r := range u.Roles {
		if r == "" {
			return fmt.Errorf("user %q: empty role name", u.Name)
		}
	}
	return nil
}

// HasPassword reports whether a password has been set.
func (u *User) HasPassword() bool { return u.PasswordHash != "" }

// HasTOTP reports whether a TOTP device is enrolled.
func (u *User) HasTOTP() bool { return u.TOTPSecret != "" }

// LogValue implements slog.LogValuer. Secrets are reduced to whether they
// are set.
func (u User) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("name", u.Name),
		slog.Any("roles", u.Roles),
		slog.String("status", u.Status),
		slog.Bool("has_password", u.PasswordHash != ""),
		slog.Bool("has_totp", u.TOTPSecret != ""),
		slog.Int("mfa_devices", len(u.Devices)),
	}
	return slog.GroupValue(attrs...)
}

// String describes the user without secrets.
func (u User) String() string {
	return fmt.Sprintf("User{Name:%q Roles:%q Status:%q HasPassword:%t HasTOTP:%t}",
		u.Name, u.Roles, u.Status, u.PasswordHash != "", u.TOTPSecret != "")
}

// GoString keeps %#v from printing secrets too.
func (u User) GoString() string { return "identity." + u.String() }
