package auth

import (
	"context"
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
)

// LoginRequest authenticates a person with password and TOTP. PublicKey is
// the client's own public key (authorized_keys format): the private key
// never leaves the client.
type LoginRequest struct {
	User       string        `json:"user"`
	Password   string        `json:"password"`
	OTP        string        `json:"otp"`
	PublicKey  string        `json:"public_key"`
	TTL        time.Duration `json:"ttl,omitempty"`
	RemoteAddr string        `json:"-"`
	// Via names the front end for the audit log ("web" for a browser
	// sign-in; empty for the API).
	Via string `json:"-"`
}

// Certs are the certificates and trust anchors a client or node receives.
type Certs struct {
	Cluster string `json:"cluster"`
	// SSHCert is an OpenSSH certificate in authorized_keys format.
	SSHCert string `json:"ssh_cert"`
	// TLSCert is a PEM X.509 client certificate for the API.
	TLSCert string `json:"tls_cert"`
	// TLSCA is the PEM TLS CA certificate of the API.
	TLSCA string `json:"tls_ca"`
	// HostCAs and UserCAs are authorized_keys lines.
	HostCAs []string  `json:"host_cas"`
	UserCAs []string  `json:"user_cas"`
	Expires time.Time `json:"expires"`
}

// LoginResponse is returned by Login.
type LoginResponse struct {
	Certs
	User   string   `json:"user"`
	Roles  []string `json:"roles"`
	Logins []string `json:"logins"`
}

// dummyHash makes a login for an unknown user cost the same as a real one.
// It is computed once, when auth starts (not in every process that links
// this package, such as each CLI command).
var dummyHash = sync.OnceValue(func() string {
	h, _ := identity.HashPassword(context.Background(), "warden-dummy-password-for-timing")
	return h
})

// maxUserTTL bounds any requested user certificate TTL.
const maxUserTTL = 30 * time.Hour

// Login checks password and TOTP and issues certificates.
func (s *Server) Login(ctx context.Context, req LoginRequest) (*LoginResponse, error) {
	fail := func(reason string, err error) (*LoginResponse, error) {
		s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: "L001F", User: req.User, RemoteAddr: req.RemoteAddr,
			Success: false, Error: reason, Fields: loginFields(req, map[string]any{"method": "password+totp"})})
		return nil, err
	}
	if len(req.User) > 128 || len(req.Password) > 1024 || len(req.OTP) > 16 || len(req.PublicKey) > 16<<10 {
		return fail("oversized input", fmt.Errorf("%w: invalid login request", ErrBadRequest))
	}
	pub, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return fail("bad public key", badRequest("%v", err))
	}
	// The certificates' issue time is taken before the user is read: a
	// removal or reset after the read voids them (voidCerts).
	issued := s.now()
	var u identity.User
	rev, err := s.getJSONRev(ctx, prefixUsers+req.User, &u)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		_, _ = identity.CheckPassword(ctx, dummyHash(), req.Password)
		return fail("unknown user", ErrUnauthenticated)
	}
	now := s.now()
	if u.Status != "active" {
		return fail("user has not completed signup", fmt.Errorf("%w: finish signing up with your invite first", ErrUnauthenticated))
	}
	if u.IsLocked(now) {
		return fail("account temporarily locked after repeated failures",
			fmt.Errorf("%w: too many failed attempts; try again after %s", ErrUnauthenticated, u.LockedUntil.UTC().Format(time.RFC3339)))
	}
	ok, err := identity.CheckPassword(ctx, u.PasswordHash, req.Password)
	if err != nil {
		return nil, err
	}
	reason := ""
	var step int64
	if !ok {
		reason = "wrong password"
	} else if step, err = identity.VerifyTOTP(u.TOTPSecret, req.OTP, u.TOTPLastStep, now); err != nil {
		reason = "invalid TOTP code"
		if errors.Is(err, identity.ErrTOTPReplayed) {
			reason = "TOTP code replayed"
		}
	}
	if reason != "" {
		lockedNow := u.RecordFailure(now)
		if err := s.casJSON(ctx, prefixUsers+u.Name, rev, u, time.Time{}); err != nil {
			s.log.Warn("record login failure", "user", u.Name, "err", err)
		}
		if lockedNow {
			s.emit(ctx, audit.Event{Event: audit.UserLocked, User: u.Name, RemoteAddr: req.RemoteAddr, Success: true,
				Fields: map[string]any{"until": u.LockedUntil, "failures": u.FailedLogins}})
		}
		return fail(reason, ErrUnauthenticated)
	}
	if u.MFADevice == "" {
		// A user who signed up before devices had ids gets one now.
		if u.MFADevice, err = identity.NewMFADeviceID(); err != nil {
			return nil, err
		}
	}
	// A locked user (or role, or device) gets nothing, even with the right
	// password; checked before anything is signed.
	if err := s.CheckLock(lock.Subject{User: u.Name, Roles: u.Roles, MFADevices: []string{u.MFADevice}}); err != nil {
		return fail("locked", err)
	}
	u.RecordSuccess()
	u.TOTPLastStep = step
	if err := s.casJSON(ctx, prefixUsers+u.Name, rev, u, time.Time{}); err != nil {
		// A concurrent login with the same code raced us: refuse, the code is spent.
		return fail("concurrent login", ErrUnauthenticated)
	}
	resp, err := s.issueCerts(ctx, issueParams{user: u.Name, roles: u.Roles, traits: u.Traits, pub: pub, ttl: req.TTL, remote: req.RemoteAddr,
		issued: issued, mfaDevice: u.MFADevice})
	if err != nil {
		return fail("certificate issuance failed", err)
	}
	s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: "L001I", User: u.Name, RemoteAddr: req.RemoteAddr, Success: true,
		Fields: loginFields(req, map[string]any{"method": "password+totp", "mfa_device": u.MFADevice})})
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
		Issued: p.issued, MFADevice: p.mfaDevice,
		PermitPTY: opts.PermitPTY, PermitPortForwarding: opts.PortForwarding, PermitAgentForwarding: opts.ForwardAgent,
	})
	if err != nil {
		return nil, fmt.Errorf("issue ssh certificate: %w", err)
	}
	cryptoPub := cryptoPublicKey(pub)
	der, err := s.ca.IssueTLSClient(cryptoPub, ca.TLSIdentity{Username: user, Kind: KindUser, Roles: roleNames, Traits: traits,
		RequestIDs: p.requests, Issued: p.issued, MFADevice: p.mfaDevice}, ttl)
	if err != nil {
		return nil, fmt.Errorf("issue tls certificate: %w", err)
	}
	expires := time.Unix(int64(cert.ValidBefore), 0).UTC()
	s.emit(ctx, audit.Event{Event: audit.CertIssued, User: user, RemoteAddr: remote, Success: true,
		Fields: map[string]any{"cert_type": "user", "serial": fmt.Sprint(cert.Serial), "principals": logins,
			"roles": roleNames, "ttl": ttl.String(), "expires": expires, "access_requests": p.requests,
			"issued": p.issued.UTC(), "mfa_device": p.mfaDevice}})
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
