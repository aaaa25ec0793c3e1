package auth

import (
	"context"
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// LoginRequest is wire.LoginRequest: the API carries it.
type LoginRequest = wire.LoginRequest

// Certs is wire.Certs: the API carries it.
type Certs = wire.Certs

// LoginResponse is wire.LoginResponse: the API carries it.
type LoginResponse = wire.LoginResponse

// maxUserTTL bounds any requested user certificate TTL.
const maxUserTTL = 30 * time.Hour

// Login checks password and TOTP and issues certificates.
//
// Unknown users, invited users who have not signed up and existing users
// with a wrong password get the same answer, after the same work: one
// password hash (against a dummy hash when there is no real one), no
// storage write. Failures are throttled per client address and per address
// and user name (beginAttempt), never by locking the account.
func (s *Server) Login(ctx context.Context, req LoginRequest) (*LoginResponse, error) {
	fail := func(reason string, err error) (*LoginResponse, error) {
		s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginFailure, User: req.User, RemoteAddr: req.RemoteAddr,
			Success: false, Error: reason, Fields: loginFields(req, map[string]any{"method": "password+totp"})})
		return nil, err
	}
	if len(req.User) > 128 || len(req.Password) > 1024 || len(req.OTP) > 64 || len(req.PublicKey) > 16<<10 {
		return fail("oversized input", fmt.Errorf("%w: invalid login request", ErrBadRequest))
	}
	// The key is checked before any credential: a key auth would not sign
	// must not cost the user their TOTP code.
	pub, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return fail("bad public key", badRequest("%v", err))
	}
	attempt, err := s.beginAttempt(ctx, "login", req.RemoteAddr, req.User)
	if err != nil {
		return nil, err
	}
	defer attempt.Abandon() // unless it ended as a success or failure below
	// The certificates' issue time is taken before the user is read: a
	// removal or reset after the read voids them (voidCerts).
	issued := s.now()
	var u identity.User
	rev, err := s.getJSONRev(ctx, prefixUsers+req.User, &u)
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	u.MigrateDevices()
	active := found && u.Status == identity.StatusActive && u.HasPassword() && u.HasMFA()
	hash := s.dummyHash
	if active {
		hash = u.PasswordHash
	}
	ok, err := s.checkPassword(ctx, hash, req.Password)
	if err != nil {
		return nil, err
	}
	method, device := "password+totp", ""
	reason, answer := "", ErrUnauthenticated
	switch {
	case !found:
		reason = "unknown user"
	case !active:
		reason = "user has not completed signup"
	case !ok:
		reason = "wrong password"
	case identity.LooksLikeRecoveryCode(req.OTP):
		// A one-time recovery code in place of the second factor.
		method = "password+recovery_code"
		if !u.Recovery.Use(req.OTP) {
			reason = "invalid recovery code"
			break
		}
		device = recoveryDeviceID(&u)
	default:
		i, err := u.VerifyTOTPDevices(req.OTP, s.now())
		switch {
		case errors.Is(err, identity.ErrTOTPReplayed):
			// Only a client that knows the password gets this far, and a
			// spent code is no secret to it: say what to do. (Right after
			// a signup, or a second login within 30 seconds.)
			reason = "TOTP code replayed"
			answer = fmt.Errorf("%w: this TOTP code was already used; wait for the next one", ErrUnauthenticated)
		case err != nil:
			reason = "invalid TOTP code"
		default:
			u.Devices[i].LastUsed = s.now().UTC()
			device = u.Devices[i].ID
		}
	}
	fail = func(reason string, err error) (*LoginResponse, error) {
		s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginFailure, User: req.User, RemoteAddr: req.RemoteAddr,
			Success: false, Error: reason, Fields: loginFields(req, map[string]any{"method": method})})
		return nil, err
	}
	if reason != "" {
		attempt.Fail()
		return fail(reason, answer)
	}
	attempt.Succeed()
	// A locked user (or role, or device) gets nothing, even with the right
	// password; checked before anything is signed.
	if err := s.CheckLock(lock.Subject{User: u.Name, Roles: u.Roles, MFADevices: []string{device}}); err != nil {
		return fail("locked", err)
	}
	if err := s.casJSON(ctx, prefixUsers+u.Name, rev, u, time.Time{}); err != nil {
		// A concurrent login with the same code raced us: refuse, the code is spent.
		return fail("concurrent login", ErrUnauthenticated)
	}
	if s.requirePasskey(ctx) {
		// The code is spent (stored above): the refusal cannot be replayed.
		return fail("passkey required", s.passkeyRequired(ctx, &u))
	}
	resp, err := s.issueCerts(ctx, issueParams{user: u.Name, roles: u.Roles, traits: u.Traits, pub: pub, ttl: req.TTL, remote: req.RemoteAddr,
		issued: issued, mfaDevice: device})
	if err != nil {
		return fail("certificate issuance failed", err)
	}
	s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginSuccess, User: u.Name, RemoteAddr: req.RemoteAddr, Success: true,
		Fields: loginFields(req, map[string]any{"method": method, "mfa_device": device})})
	return resp, nil
}

func loginFields(req LoginRequest, f map[string]any) map[string]any {
	if req.Via != "" {
		f["via"] = req.Via
	}
	return f
}

func parsePublicKey(s string) (ssh.PublicKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("public key: %v", err)
	}
	if _, ok := pub.(ssh.CryptoPublicKey); !ok {
		return nil, errors.New("public key: unsupported key type")
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, errors.New("public key: a certificate is not a public key")
	}
	// Everything the CA would refuse later (RSA under 2048 bits, DSA...),
	// refused now, with the reason.
	if err := ca.CheckSubjectKey(pub); err != nil {
		return nil, fmt.Errorf("public key: %v", err)
	}
	return pub, nil
}

// internalPrincipal is always present so a certificate never has an empty
// principal list (which OpenSSH would treat as "any login").
func internalPrincipal(user string) string { return ca.InternalPrincipalPrefix + user }

// issueParams describe a user certificate pair to issue.
type issueParams struct {
	user     string
	roles    []string
	traits   map[string][]string
	pub      ssh.PublicKey
	ttl      time.Duration
	remote   string
	requests []string
	// notAfter caps the expiry (an access request's end).
	notAfter time.Time
	// issued is when issuance was decided, before the user record was
	// read; the certificates carry it, and expire within maxUserTTL of it.
	issued time.Time
	// mfaDevice is the MFA device of the login.
	mfaDevice string
	// botInstance, botGeneration: a bot's renewable identity (bots.go).
	botInstance   string
	botGeneration uint64
}

func (s *Server) issueCerts(ctx context.Context, p issueParams) (*LoginResponse, error) {
	user, roleNames, traits, pub, ttl, remote := p.user, p.roles, p.traits, p.pub, p.ttl, p.remote
	sub := lock.Subject{User: user, Roles: roleNames, Requests: p.requests}
	if p.mfaDevice != "" {
		sub.MFADevices = []string{p.mfaDevice}
	}
	if err := s.CheckLock(sub); err != nil {
		return nil, err
	}
	if p.issued.IsZero() {
		return nil, errors.New("issue certificates: no issue time")
	}
	roles := s.roles.get(roleNames)
	opts := policy.MergeOptions(roles)
	if ttl <= 0 {
		ttl = s.cfg.DefaultTTL
	}
	if ttl > maxUserTTL {
		ttl = maxUserTTL
	}
	if opts.MaxSessionTTL > 0 && ttl > opts.MaxSessionTTL {
		ttl = opts.MaxSessionTTL
	}
	// No certificate outlives its issue time by more than maxUserTTL, so
	// the lock that voids it (voidCerts) outlives it.
	if left := p.issued.Add(maxUserTTL).Sub(s.now()); ttl > left {
		ttl = left
	}
	if !p.notAfter.IsZero() {
		if left := p.notAfter.Sub(s.now()); ttl > left {
			ttl = left
		}
		if ttl <= 0 {
			return nil, fmt.Errorf("%w: the access has already expired", ErrAccessDenied)
		}
	}
	logins := policy.AllowedLogins(roles, traits)
	principals := append(append([]string(nil), logins...), internalPrincipal(user))
	cert, err := s.ca.IssueUser(ca.UserCertRequest{
		PublicKey: pub, Username: user, Principals: principals, Roles: roleNames, Traits: traits, TTL: ttl, RequestIDs: p.requests,
		Issued: p.issued, MFADevice: p.mfaDevice, BotInstance: p.botInstance, BotGeneration: p.botGeneration,
		PermitPTY: opts.PermitPTY, PermitPortForwarding: opts.PortForwarding, PermitAgentForwarding: opts.ForwardAgent,
	})
	if err != nil {
		return nil, fmt.Errorf("issue ssh certificate: %w", err)
	}
	if err := s.recordIssued(ctx, cert, Caller{User: user, Roles: roleNames, RequestIDs: p.requests, Issued: p.issued, MFADevice: p.mfaDevice}); err != nil {
		return nil, err
	}
	cryptoPub := cryptoPublicKey(pub)
	der, err := s.ca.IssueTLSClient(cryptoPub, ca.TLSIdentity{Username: user, Kind: KindUser, Roles: roleNames, Traits: traits,
		RequestIDs: p.requests, Issued: p.issued, MFADevice: p.mfaDevice, BotInstance: p.botInstance, BotGeneration: p.botGeneration}, ttl)
	if err != nil {
		return nil, fmt.Errorf("issue tls certificate: %w", err)
	}
	expires := time.Unix(int64(cert.ValidBefore), 0).UTC()
	fields := map[string]any{"cert_type": "user", "serial": fmt.Sprint(cert.Serial), "principals": logins,
		"roles": roleNames, "ttl": ttl.String(), "expires": expires, "access_requests": p.requests,
		"issued": p.issued.UTC(), "mfa_device": p.mfaDevice}
	if p.botInstance != "" {
		fields["bot_instance"], fields["bot_generation"] = p.botInstance, p.botGeneration
	}
	s.emit(ctx, audit.Event{Event: audit.CertIssued, User: user, RemoteAddr: remote, Success: true, Fields: fields})
	return &LoginResponse{
		Certs:  s.certs(cert, der, expires),
		User:   user,
		Roles:  roleNames,
		Logins: logins,
	}, nil
}

func (s *Server) certs(cert *ssh.Certificate, tlsDER []byte, expires time.Time) Certs {
	return Certs{
		Cluster: s.cfg.ClusterName,
		SSHCert: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		TLSCert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsDER})),
		TLSCA:   string(s.ca.TLSCAPEM()),
		HostCAs: []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.ca.HostCAPublicKey())))},
		UserCAs: []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.ca.UserCAPublicKey())))},
		Expires: expires,
	}
}

// IssueAdminIdentity issues a TLS client certificate for the local admin
// identity (written to the auth data directory).
func (s *Server) IssueAdminIdentity(pub crypto.PublicKey, ttl time.Duration) ([]byte, error) {
	return s.ca.IssueTLSClient(pub, ca.TLSIdentity{Username: "admin", Kind: KindAdmin, Roles: []string{"admin"}}, ttl)
}
