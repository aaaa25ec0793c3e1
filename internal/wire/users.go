package wire

import "time"

// SignupChallenge is returned by BeginSignup: the TOTP secret to enrol.
type SignupChallenge struct {
	User    string `json:"user"`
	Secret  string `json:"secret"`
	URL     string `json:"otpauth_url"`
	QRPNG   []byte `json:"qr_png,omitempty"`
	Cluster string `json:"cluster"`
	// Reset is true for the invite of a reset (a new password and TOTP
	// for an existing user), false for a new user's.
	Reset bool `json:"reset,omitempty"`
}

// SignupRequest begins (Token) or completes (Token, Password, OTP) a
// signup. With PublicKey, completing it also logs the user in: the
// response carries certificates for that key, as Login's would, so the
// TOTP code just used is not needed again.
type SignupRequest struct {
	Token      string `json:"token"`
	Password   string `json:"password,omitempty"`
	OTP        string `json:"otp,omitempty"`
	PublicKey  string `json:"public_key,omitempty"`
	RemoteAddr string `json:"-"`
}

// InviteResult is what an admin hands to the new user.
type InviteResult struct {
	User    string    `json:"user"`
	Token   string    `json:"token"`
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

// UserInfo is a user as shown to admins (no secrets).
type UserInfo struct {
	Name      string              `json:"name"`
	Roles     []string            `json:"roles"`
	Traits    map[string][]string `json:"traits,omitempty"`
	Status    string              `json:"status"`
	CreatedAt time.Time           `json:"created_at"`
	// MFADevice is the id of the user's TOTP device (for warden lock
	// --mfa-device).
	MFADevice string `json:"mfa_device,omitempty"`
	// Type is "sso" for a user made by single sign-on (Connector names
	// its connector), empty for a local user.
	Type      string `json:"type,omitempty"`
	Connector string `json:"connector,omitempty"`
}

// CreateUserRequest creates a user.
type CreateUserRequest struct {
	Name   string              `json:"name"`
	Roles  []string            `json:"roles"`
	Logins []string            `json:"logins,omitempty"`
	Traits map[string][]string `json:"traits,omitempty"`
}

// UpdateUserRequest changes a user's roles.
type UpdateUserRequest struct {
	Roles []string `json:"roles"`
}
