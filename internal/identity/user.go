package identity

import (
	"errors"
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

// Lockout policy: after MaxFailedLogins consecutive failures the user is
// locked for LockoutDuration.
const (
	MaxFailedLogins = 5
	LockoutDuration = 15 * time.Minute
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
	FailedLogins int       `json:"failed_logins,omitempty"`
	LockedUntil  time.Time `json:"locked_until,omitzero"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	UpdatedAt    time.Time `json:"updated_at,omitzero"`
	// CertsIssuedAfter voids every certificate issued up to it (by auth's
	// clock): set when the user is created, reset, or loses a role.
	// CreatedAt stands in when it is unset.
	CertsIssuedAfter time.Time `json:"certs_issued_after,omitzero"`
	// MFADevice is the id of the user's TOTP device, new at each signup.
	// Certificates carry it, so a lock on it cuts the logins made with it.
	MFADevice string `json:"mfa_device,omitempty"`
}

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
	if u.FailedLogins < 0 {
		return fmt.Errorf("user %q: negative failed login count", u.Name)
	}
	return nil
}

// RecordFailure counts a failed login at now. It reports whether this failure
// locked the user. Failures while the user is already locked are not counted,
// so hammering a locked account does not extend its lock.
func (u *User) RecordFailure(now time.Time) (lockedNow bool) {
	if u.IsLocked(now) {
		return false
	}
	u.FailedLogins++
	if u.FailedLogins >= MaxFailedLogins {
		u.FailedLogins = 0
		u.LockedUntil = now.Add(LockoutDuration)
		return true
	}
	return false
}

// RecordSuccess clears the failure count and any lock.
func (u *User) RecordSuccess() {
	u.FailedLogins = 0
	u.LockedUntil = time.Time{}
}

// IsLocked reports whether the user is locked out at now.
func (u *User) IsLocked(now time.Time) bool {
	return now.Before(u.LockedUntil)
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
		slog.Int("failed_logins", u.FailedLogins),
	}
	if !u.LockedUntil.IsZero() {
		attrs = append(attrs, slog.Time("locked_until", u.LockedUntil))
	}
	return slog.GroupValue(attrs...)
}

// String describes the user without secrets.
func (u User) String() string {
	return fmt.Sprintf("User{Name:%q Roles:%q Status:%q HasPassword:%t HasTOTP:%t FailedLogins:%d LockedUntil:%s}",
		u.Name, u.Roles, u.Status, u.PasswordHash != "", u.TOTPSecret != "", u.FailedLogins, u.LockedUntil.Format(time.RFC3339))
}

// GoString keeps %#v from printing secrets too.
func (u User) GoString() string { return "identity." + u.String() }

// ErrLocked is returned by callers that refuse a login because the user is
// locked out; it is defined here so every edge maps it the same way.
var ErrLocked = errors.New("account temporarily locked after repeated failed logins")
