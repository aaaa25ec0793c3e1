package auth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// Invite is a single-use signup (or reset) invitation. Only the hash of the
// token is stored.
type Invite struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
	Reset   bool      `json:"reset,omitempty"`
	// TOTPSecret is the secret offered at BeginSignup, confirmed by
	// CompleteSignup.
	TOTPSecret string `json:"totp_secret,omitempty"`
}

// InviteResult is wire.InviteResult: the API carries it.
type InviteResult = wire.InviteResult

// UserInfo is wire.UserInfo: the API carries it.
type UserInfo = wire.UserInfo

// CreateUserRequest is wire.CreateUserRequest: the API carries it.
type CreateUserRequest = wire.CreateUserRequest

func (s *Server) inviteURL(token string) string {
	return (&url.URL{Scheme: "https", Host: s.cfg.PublicAddr, Path: "/web/invite/" + token}).String()
}

func (s *Server) newInvite(ctx context.Context, user string, reset bool) (*InviteResult, error) {
	tok, err := identity.NewToken()
	if err != nil {
		return nil, err
	}
	exp := s.now().Add(s.cfg.InviteTTL).UTC()
	inv := Invite{User: user, Expires: exp, Reset: reset}
	if err := s.createJSON(ctx, prefixInvites+identity.HashToken(tok), inv, exp); err != nil {
		return nil, fmt.Errorf("store invite: %w", err)
	}
	return &InviteResult{User: user, Token: tok, URL: s.inviteURL(tok), Expires: exp}, nil
}

// CreateUser adds a pending user and returns a single-use invite.
func (s *Server) CreateUser(ctx context.Context, c Caller, req CreateUserRequest) (*InviteResult, error) {
	if err := s.authorize(c, "CreateUser"); err != nil {
		return nil, err
	}
	if err := identity.ValidateUsername(req.Name); err != nil {
		return nil, badRequest("%v", err)
	}
	if identity.IsBotUserName(req.Name) {
		return nil, badRequest("user names starting with %q are bots': add a bot with warden bots add", identity.BotUserPrefix)
	}
	if err := s.checkUserRoles(ctx, req.Roles); err != nil {
		return nil, err
	}
	traits := map[string][]string{}
	for k, v := range req.Traits {
		traits[k] = append([]string(nil), v...)
	}
	for _, l := range req.Logins {
		if err := identity.ValidateLogin(l); err != nil {
			return nil, badRequest("%v", err)
		}
		traits["logins"] = append(traits["logins"], l)
	}
	now := s.now().UTC()
	u := identity.User{Name: req.Name, Roles: req.Roles, Traits: traits, Status: "pending", CreatedAt: now, UpdatedAt: now}
	if err := s.createJSON(ctx, prefixUsers+u.Name, u, time.Time{}); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return nil, fmt.Errorf("user %q %w", u.Name, storage.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("store user: %w", err)
	}
	inv, err := s.newInvite(ctx, u.Name, false)
	if err != nil {
		return nil, err
	}
	s.emit(ctx, audit.Event{Event: audit.UserCreate, User: c.Name(), Success: true,
		Fields: map[string]any{"target_user": u.Name, "roles": u.Roles, "logins": traits["logins"]}})
	return inv, nil
}

// checkUserRoles refuses an empty role list and roles that do not exist.
func (s *Server) checkUserRoles(ctx context.Context, roles []string) error {
	if len(roles) == 0 {
		return badRequest("a user needs at least one role (--roles)")
	}
	for _, r := range roles {
		if _, err := s.b.Get(ctx, prefixRoles+r); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return badRequest("role %q does not exist", r)
			}
			return err
		}
	}
	return nil
}

// ListUsers returns all users without secrets.
func (s *Server) ListUsers(ctx context.Context, c Caller) ([]UserInfo, error) {
	if err := s.authorize(c, "ListUsers"); err != nil {
		return nil, err
	}
	users, err := listJSON[identity.User](ctx, s.b, prefixUsers)
	if err != nil {
		return nil, err
	}
	out := make([]UserInfo, 0, len(users))
	for _, u := range users {
		out = append(out, userInfo(u))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func userInfo(u identity.User) UserInfo {
	return UserInfo{Name: u.Name, Roles: u.Roles, Traits: u.Traits, Status: u.Status,
		CreatedAt: u.CreatedAt, MFADevice: u.MFADevice, Type: u.Type, Connector: u.Connector}
}

// DeleteUser removes a user and cuts them off at once: the certificates
// they hold stop working everywhere (API, proxy, nodes, live sessions).
func (s *Server) DeleteUser(ctx context.Context, c Caller, name string) error {
	if err := s.authorize(c, "DeleteUser"); err != nil {
		return err
	}
	if err := s.b.Delete(ctx, prefixUsers+name); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("user %q %w", name, storage.ErrNotFound)
		}
		return err
	}
	s.emit(ctx, audit.Event{Event: audit.UserDelete, User: c.Name(), Success: true,
		Fields: map[string]any{"target_user": name}})
	return s.voidCerts(ctx, c, name, "user "+name+" was removed")
}

// UpdateUserRequest is wire.UpdateUserRequest: the API carries it.
type UpdateUserRequest = wire.UpdateUserRequest

// UpdateUser sets a user's roles. API calls use the new roles at once. If a
// role was taken away, the certificates the user holds are voided
// everywhere, live sessions included (they carry the old roles and
// logins): the user logs in again. Added roles reach SSH at the next login.
func (s *Server) UpdateUser(ctx context.Context, c Caller, name string, req UpdateUserRequest) (*UserInfo, error) {
	if err := s.authorize(c, "UpdateUser"); err != nil {
		return nil, err
	}
	roles := uniq(slices.Clone(req.Roles))
	if err := s.checkUserRoles(ctx, roles); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 5; attempt++ {
		var u identity.User
		rev, err := s.getJSONRev(ctx, prefixUsers+name, &u)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil, fmt.Errorf("user %q %w", name, storage.ErrNotFound)
			}
			return nil, err
		}
		var removed []string
		for _, r := range u.Roles {
			if !slices.Contains(roles, r) {
				removed = append(removed, r)
			}
		}
		previous := u.Roles
		now := s.now().UTC()
		u.Roles, u.UpdatedAt = roles, now
		if len(removed) > 0 {
			u.CertsIssuedAfter = now
		}
		if err := s.casJSON(ctx, prefixUsers+name, rev, u, time.Time{}); errors.Is(err, storage.ErrCompareFailed) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("update user: %w", err)
		}
		s.emit(ctx, audit.Event{Event: audit.UserUpdate, User: c.Name(), Success: true,
			Fields: map[string]any{"target_user": name, "roles": roles, "previous_roles": previous, "certs_voided": len(removed) > 0}})
		if len(removed) > 0 {
			msg := fmt.Sprintf("your roles changed (%s removed); log in again", strings.Join(removed, ", "))
			if err := s.voidCerts(ctx, c, name, msg); err != nil {
				return nil, err
			}
		}
		info := userInfo(u)
		return &info, nil
	}
	return nil, errors.New("the user is being changed concurrently; try again")
}

// ResetUser clears a user's password and TOTP and returns a new invite.
func (s *Server) ResetUser(ctx context.Context, c Caller, name string) (*InviteResult, error) {
	if err := s.authorize(c, "ResetUser"); err != nil {
		return nil, err
	}
	var u identity.User
	rev, err := s.getJSONRev(ctx, prefixUsers+name, &u)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("user %q %w", name, storage.ErrNotFound)
		}
		return nil, err
	}
	if u.Type == identity.TypeBot {
		return nil, badRequest("%s is a bot: it has no password to reset (give it a new join token: warden tokens add --type bot --bot NAME)", name)
	}
	if u.Type == identity.TypeSSO {
		// An invite would give an SSO user a password of their own.
		return nil, badRequest("user %q signs in with SSO connector %q: there is nothing to reset (remove or lock the user instead)", name, u.Connector)
	}
	u.PasswordHash, u.TOTPSecret, u.TOTPLastStep, u.MFADevice = "", "", 0, ""
	u.Devices, u.Recovery, u.WebAuthnID = nil, nil, nil
	u.Status = "pending"
	u.UpdatedAt = s.now().UTC()
	u.CertsIssuedAfter = u.UpdatedAt
	if err := s.casJSON(ctx, prefixUsers+name, rev, u, time.Time{}); err != nil {
		return nil, fmt.Errorf("reset user: %w", err)
	}
	s.emit(ctx, audit.Event{Event: audit.UserReset, User: c.Name(), Success: true,
		Fields: map[string]any{"target_user": name}})
	// The old credentials are gone: so are the certificates they got.
	if err := s.voidCerts(ctx, c, name, "user "+name+" was reset: finish signing up with the new invite, then log in again"); err != nil {
		return nil, err
	}
	return s.newInvite(ctx, name, true)
}

// SignupChallenge is wire.SignupChallenge: the API carries it.
type SignupChallenge = wire.SignupChallenge

// SignupRequest is wire.SignupRequest: the API carries it.
type SignupRequest = wire.SignupRequest

// loadInvite finds the invite of a token. Unknown, used and expired tokens
// are failures for the throttle (token guessing), counted on attempt.
func (s *Server) loadInvite(ctx context.Context, attempt *identity.Attempt, token string) (Invite, int64, error) {
	var inv Invite
	if len(token) == 0 || len(token) > 256 {
		attempt.Fail()
		return inv, 0, fmt.Errorf("%w: invalid invite token", ErrUnauthenticated)
	}
	rev, err := s.getJSONRev(ctx, prefixInvites+identity.HashToken(token), &inv)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			attempt.Fail()
			return inv, 0, fmt.Errorf("%w: the invite is unknown, expired or already used; ask an admin for a new one (warden users reset)", ErrUnauthenticated)
		}
		return inv, 0, err
	}
	if !s.now().Before(inv.Expires) {
		attempt.Fail()
		return inv, 0, fmt.Errorf("%w: the invite expired; ask an admin for a new one (warden users reset)", ErrUnauthenticated)
	}
	attempt.Succeed()
	return inv, rev, nil
}

// BeginSignup validates an invite and returns a TOTP secret to enrol.
func (s *Server) BeginSignup(ctx context.Context, req SignupRequest) (*SignupChallenge, error) {
	attempt, err := s.beginAttempt(ctx, "signup", req.RemoteAddr, "")
	if err != nil {
		return nil, err
	}
	defer attempt.Abandon()
	inv, rev, err := s.loadInvite(ctx, attempt, req.Token)
	if err != nil {
		return nil, err
	}
	secret, u, png, err := identity.NewTOTP("Warden "+s.cfg.ClusterName, inv.User)
	if err != nil {
		return nil, err
	}
	inv.TOTPSecret = secret
	if err := s.casJSON(ctx, prefixInvites+identity.HashToken(req.Token), rev, inv, inv.Expires); err != nil {
		return nil, fmt.Errorf("update invite: %w", err)
	}
	return &SignupChallenge{User: inv.User, Secret: secret, URL: u, QRPNG: png, Cluster: s.cfg.ClusterName, Reset: inv.Reset}, nil
}

// CompleteSignup sets the password and confirms TOTP enrolment with a valid
// code. The invite is consumed in the same step. With a public key it also
// logs the user in (certificates, audited as user.login with method
// "signup"); without one it returns nil.
func (s *Server) CompleteSignup(ctx context.Context, req SignupRequest) (*LoginResponse, error) {
	var pub ssh.PublicKey
	if req.PublicKey != "" {
		if len(req.PublicKey) > 16<<10 {
			return nil, badRequest("public key too large")
		}
		// Checked first: a key auth would not sign must not use the invite up.
		var err error
		if pub, err = parsePublicKey(req.PublicKey); err != nil {
			return nil, badRequest("%v", err)
		}
	}
	attempt, err := s.beginAttempt(ctx, "signup", req.RemoteAddr, "")
	if err != nil {
		return nil, err
	}
	defer attempt.Abandon()
	inv, _, err := s.loadInvite(ctx, attempt, req.Token)
	if err != nil {
		return nil, err
	}
	if inv.TOTPSecret == "" {
		return nil, badRequest("start the signup first (the TOTP secret has not been issued)")
	}
	if err := identity.ValidatePassword(req.Password); err != nil {
		return nil, badRequest("%v", err)
	}
	step, err := identity.VerifyTOTP(inv.TOTPSecret, req.OTP, 0, s.now())
	if err != nil {
		return nil, badRequest("the TOTP code is not valid: check your authenticator's clock and try the next code")
	}
	hash, err := identity.HashPassword(ctx, req.Password)
	if err != nil {
		return nil, err
	}
	// Consume the invite first: a second CompleteSignup with the same token
	// fails here, so a token can never be used twice.
	if err := s.b.Delete(ctx, prefixInvites+identity.HashToken(req.Token)); err != nil {
		return nil, fmt.Errorf("%w: the invite was already used", ErrUnauthenticated)
	}
	// Taken before the user is read, as in Login: a removal or reset after
	// the read voids these certificates.
	issued := s.now()
	var u identity.User
	rev, err := s.getJSONRev(ctx, prefixUsers+inv.User, &u)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", inv.User, err)
	}
	u.PasswordHash, u.TOTPSecret, u.TOTPLastStep = hash, "", 0
	if u.MFADevice, err = identity.NewMFADeviceID(); err != nil {
		return nil, err
	}
	// The signup's authenticator is the user's first MFA device, "otp".
	u.Devices = []identity.MFADevice{{ID: u.MFADevice, Name: "otp", Kind: identity.DeviceTOTP, CreatedAt: s.now().UTC(),
		TOTPSecret: inv.TOTPSecret, TOTPLastStep: step}}
	u.Status = "active"
	u.UpdatedAt = s.now().UTC()
	if err := s.casJSON(ctx, prefixUsers+u.Name, rev, u, time.Time{}); err != nil {
		return nil, fmt.Errorf("activate user: %w", err)
	}
	s.emit(ctx, audit.Event{Event: audit.UserSignup, User: u.Name, RemoteAddr: req.RemoteAddr, Success: true,
		Fields: map[string]any{"reset": inv.Reset, "mfa_device": u.MFADevice}})
	if pub == nil {
		return nil, nil
	}
	ev := audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginSuccess, User: u.Name, RemoteAddr: req.RemoteAddr, Success: true,
		Fields: map[string]any{"method": "signup"}}
	refuse := func(reason string, err error) (*LoginResponse, error) {
		ev.Code, ev.Success, ev.Error = audit.CodeLoginFailure, false, reason
		s.emit(ctx, ev)
		return nil, fmt.Errorf("signup complete, but no login: %w", err)
	}
	if err := s.CheckLock(lock.Subject{User: u.Name, Roles: u.Roles, MFADevices: []string{u.MFADevice}}); err != nil {
		return refuse("locked", err)
	}
	if s.requirePasskey(ctx) {
		return refuse("passkey required", s.passkeyRequired(ctx, &u))
	}
	resp, err := s.issueCerts(ctx, issueParams{user: u.Name, roles: u.Roles, traits: u.Traits, pub: pub, remote: req.RemoteAddr,
		issued: issued, mfaDevice: u.MFADevice})
	if err != nil {
		return refuse("certificate issuance failed", err)
	}
	s.emit(ctx, ev)
	return resp, nil
}

// userRecord loads a user (with secrets: internal use only).
func (s *Server) userRecord(ctx context.Context, name string) (*identity.User, error) {
	var u identity.User
	if err := s.getJSON(ctx, prefixUsers+name, &u); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("user %q %w", name, storage.ErrNotFound)
		}
		return nil, err
	}
	return &u, nil
}
