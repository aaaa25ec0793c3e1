package ca

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/identity"
)

// Warden's SSH certificate extensions. Values are JSON.
const (
	ExtRoles    = "roles@warden.dev"    // JSON array of role names
	ExtTraits   = "traits@warden.dev"   // JSON object: trait name -> values
	ExtRequests = "requests@warden.dev" // JSON array of access request IDs
	// ExtIssued is when auth decided to issue the certificate (a JSON
	// string, RFC 3339 with nanoseconds): removing or resetting a user voids
	// the certificates issued up to then (see lock.Lock.IssuedNotAfter).
	ExtIssued = "issued@warden.dev"
	// ExtMFADevice is the MFA device used at the login the certificate
	// comes from (a JSON string), so a lock on the device matches it.
	ExtMFADevice = "mfa-device@warden.dev"
	// ExtBotGeneration is a bot's renewable identity's generation (a JSON
	// number), advanced at every renewal (see auth's bot renewal).
	ExtBotGeneration = "bot-generation@warden.dev"
	// ExtBotInstance names the join a bot identity comes from (a JSON
	// string); generations count per instance.
	ExtBotInstance = "bot-instance@warden.dev"
)

// Standard OpenSSH extensions and critical options.
const (
	ExtPermitPTY             = "permit-pty"
	ExtPermitPortForwarding  = "permit-port-forwarding"
	ExtPermitAgentForwarding = "permit-agent-forwarding"
	OptSourceAddress         = "source-address"
)

// MaxCertTTL bounds any certificate's lifetime: Warden certificates are
// short-lived by design, and roles cap TTLs far lower.
const MaxCertTTL = 366 * 24 * time.Hour

// minRSABits is the smallest RSA subject key signed.
const minRSABits = 2048

// UserCertRequest asks for an SSH user certificate.
type UserCertRequest struct {
	PublicKey ssh.PublicKey
	// Username becomes the KeyId.
	Username string
	// Principals are the OS logins the certificate may be used for.
	Principals []string
	Roles      []string
	Traits     map[string][]string
	// RequestIDs are the active access requests the certificate carries.
	RequestIDs []string
	// Issued is when auth decided to issue the certificate; zero means now.
	Issued time.Time
	// MFADevice is the id of the MFA device used at login, if any.
	MFADevice string
	// BotGeneration is the generation of a bot's renewable identity (0:
	// none; output certificates of a bot have none).
	BotGeneration uint64
	// BotInstance is the bot instance (one join) the generation counts in.
	BotInstance string
	// SessionMFA marks a per-session MFA certificate (ExtSessionMFA).
	SessionMFA *SessionMFA
	TTL        time.Duration

	PermitPTY             bool
	PermitPortForwarding  bool
	PermitAgentForwarding bool
	// SourceAddress optionally pins use of the certificate to a
	// comma-separated list of addresses or CIDR prefixes.
	SourceAddress string
}

// HostCertRequest asks for an SSH host certificate.
type HostCertRequest struct {
	PublicKey ssh.PublicKey
	// HostID becomes the KeyId.
	HostID string
	// Principals are the names clients reach the host by.
	Principals []string
	TTL        time.Duration
}

// IssueUser signs a user certificate with the user CA. The certificate is
// valid from a minute ago (clock skew) until now+TTL.
func (a *Authority) IssueUser(req UserCertRequest) (*ssh.Certificate, error) {
	cert, err := a.userCert(req)
	if err != nil {
		return nil, fmt.Errorf("issue user cert for %q: %w", truncate(req.Username), err)
	}
	if err := cert.SignCert(rand.Reader, a.userSigner); err != nil {
		return nil, fmt.Errorf("issue user cert for %q: sign: %w", req.Username, err)
	}
	return cert, nil
}

func (a *Authority) userCert(req UserCertRequest) (*ssh.Certificate, error) {
	if err := identity.ValidateUsername(req.Username); err != nil {
		return nil, err
	}
	if err := checkSubjectKey(req.PublicKey); err != nil {
		return nil, err
	}
	if err := validateUserPrincipals(req.Principals); err != nil {
		return nil, err
	}
	if err := checkInternalPrincipals(req.Username, req.Principals); err != nil {
		return nil, err
	}
	if err := validateRoles(req.Roles); err != nil {
		return nil, err
	}
	if err := validateTraits(req.Traits); err != nil {
		return nil, err
	}
	if err := validateRequestIDs(req.RequestIDs); err != nil {
		return nil, err
	}
	issued, err := a.issued(req.Issued)
	if err != nil {
		return nil, err
	}
	if req.MFADevice != "" {
		if err := validateID(req.MFADevice); err != nil {
			return nil, fmt.Errorf("MFA device: %w", err)
		}
	}
	after, before, err := a.sshValidity(req.TTL)
	if err != nil {
		return nil, err
	}
	ext := make(map[string]string, 8)
	ext[ExtIssued] = encodeTime(issued)
	if req.MFADevice != "" {
		ext[ExtMFADevice] = `"` + req.MFADevice + `"`
	}
	if req.BotGeneration > 0 {
		if err := validateID(req.BotInstance); err != nil {
			return nil, fmt.Errorf("bot instance: %w", err)
		}
		ext[ExtBotGeneration] = strconv.FormatUint(req.BotGeneration, 10)
		ext[ExtBotInstance] = `"` + req.BotInstance + `"`
	}
	if req.SessionMFA != nil {
		if err := req.SessionMFA.validate(); err != nil {
			return nil, err
		}
		if ext[ExtSessionMFA], err = marshalExt(req.SessionMFA); err != nil {
			return nil, err
		}
	}
	if req.PermitPTY {
		ext[ExtPermitPTY] = ""
	}
	if req.PermitPortForwarding {
		ext[ExtPermitPortForwarding] = ""
	}
	if req.PermitAgentForwarding {
		ext[ExtPermitAgentForwarding] = ""
	}
	roles := req.Roles
	if roles == nil {
		roles = []string{}
	}
	if ext[ExtRoles], err = marshalExt(roles); err != nil {
		return nil, fmt.Errorf("roles: %w", err)
	}
	if len(req.Traits) > 0 {
		if ext[ExtTraits], err = marshalExt(req.Traits); err != nil {
			return nil, fmt.Errorf("traits: %w", err)
		}
	}
	if len(req.RequestIDs) > 0 {
		if ext[ExtRequests], err = marshalExt(req.RequestIDs); err != nil {
			return nil, fmt.Errorf("access request IDs: %w", err)
		}
	}
	var crit map[string]string
	if req.SourceAddress != "" {
		src, err := normalizeSourceAddress(req.SourceAddress)
		if err != nil {
			return nil, err
		}
		crit = map[string]string{OptSourceAddress: src}
	}
	serial, err := randomUint64()
	if err != nil {
		return nil, err
	}
	return &ssh.Certificate{
		Key:             req.PublicKey,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           req.Username,
		ValidPrincipals: append([]string(nil), req.Principals...),
		ValidAfter:      after,
		ValidBefore:     before,
		Permissions:     ssh.Permissions{CriticalOptions: crit, Extensions: ext},
	}, nil
}

// IssueHost signs a host certificate with the host CA. Host certificates
// carry no extensions.
func (a *Authority) IssueHost(req HostCertRequest) (*ssh.Certificate, error) {
	if err := a.checkHostRequest(req); err != nil {
		return nil, fmt.Errorf("issue host cert for %q: %w", truncate(req.HostID), err)
	}
	after, before, err := a.sshValidity(req.TTL)
	if err != nil {
		return nil, fmt.Errorf("issue host cert for %q: %w", req.HostID, err)
	}
	serial, err := randomUint64()
	if err != nil {
		return nil, fmt.Errorf("issue host cert for %q: %w", req.HostID, err)
	}
	cert := &ssh.Certificate{
		Key:             req.PublicKey,
		Serial:          serial,
		CertType:        ssh.HostCert,
		KeyId:           req.HostID,
		ValidPrincipals: append([]string(nil), req.Principals...),
		ValidAfter:      after,
		ValidBefore:     before,
	}
	if err := cert.SignCert(rand.Reader, a.hostSigner); err != nil {
		return nil, fmt.Errorf("issue host cert for %q: sign: %w", req.HostID, err)
	}
	return cert, nil
}

func (a *Authority) checkHostRequest(req HostCertRequest) error {
	if err := validateID(req.HostID); err != nil {
		return fmt.Errorf("host ID: %w", err)
	}
	if err := checkSubjectKey(req.PublicKey); err != nil {
		return err
	}
	return validateHostPrincipals(req.Principals)
}

// issued checks the issue time of a certificate request: zero means now,
// and it may not be in the future (beyond clock skew).
func (a *Authority) issued(t time.Time) (time.Time, error) {
	now := a.now()
	if t.IsZero() {
		return now, nil
	}
	if t.After(now.Add(clockSkew)) {
		return time.Time{}, fmt.Errorf("issue time %s is in the future", t.UTC().Format(time.RFC3339))
	}
	return t, nil
}

func (a *Authority) sshValidity(ttl time.Duration) (after, before uint64, err error) {
	if ttl <= 0 {
		return 0, 0, fmt.Errorf("TTL %v is not positive", ttl)
	}
	if ttl > MaxCertTTL {
		return 0, 0, fmt.Errorf("TTL %v is longer than the maximum %v", ttl, MaxCertTTL)
	}
	now := a.now()
	start := now.Add(-clockSkew).Unix()
	if start < 0 {
		start = 0
	}
	return uint64(start), uint64(now.Add(ttl).Unix()), nil
}

// CheckSubjectKey reports why a key could not be certified (an SSH and a
// TLS certificate for the same key, as a login issues), so a caller can
// refuse it before any credential is checked or spent.
func CheckSubjectKey(k ssh.PublicKey) error {
	if err := checkSubjectKey(k); err != nil {
		return err
	}
	ck, ok := k.(ssh.CryptoPublicKey)
	if !ok {
		return fmt.Errorf("key type %q is not accepted", k.Type())
	}
	return checkTLSKey(ck.CryptoPublicKey())
}

// checkSubjectKey refuses keys Warden will not certify: certificates as
// keys, DSA, and RSA below 2048 bits.
func checkSubjectKey(k ssh.PublicKey) error {
	if k == nil {
		return errors.New("missing public key")
	}
	switch k.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256:
		return nil
	case ssh.KeyAlgoRSA:
		ck, ok := k.(ssh.CryptoPublicKey)
		if !ok {
			return errors.New("RSA key without a crypto key")
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return errors.New("RSA key of unexpected type")
		}
		if bits := rk.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("RSA key of %d bits refused: at least %d are required", bits, minRSABits)
		}
		return nil
	//lint:ignore SA1019 named to refuse it
	case ssh.KeyAlgoDSA:
		return errors.New("DSA keys are refused: use Ed25519, ECDSA or RSA of at least 2048 bits")
	default:
		return fmt.Errorf("key type %q is not accepted", k.Type())
	}
}

func randomUint64() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("serial: %w", err)
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

func marshalExt(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	if len(b) > MaxExtensionLen {
		return "", fmt.Errorf("encoded extension is %d bytes, at most %d allowed", len(b), MaxExtensionLen)
	}
	return string(b), nil
}

// CertIdentity is the Warden identity carried by an SSH user certificate.
type CertIdentity struct {
	Username   string
	Roles      []string
	Traits     map[string][]string
	RequestIDs []string
	Principals []string
	Expires    time.Time
	// Issued is when auth decided to issue the certificate (ExtIssued, or
	// ValidAfter for a certificate without it: earlier, so a revocation
	// by issue time still covers it).
	Issued time.Time
	// MFADevice is the MFA device used at login, if the certificate says.
	MFADevice string
	// BotGeneration is a bot identity's generation (ExtBotGeneration), 0
	// without one.
	BotGeneration uint64
	BotInstance   string
	// SessionMFA is the mark of a per-session MFA certificate, or nil.
	SessionMFA *SessionMFA
}

// IdentityFromSSHCert decodes and validates the identity in a user
// certificate. It does not verify the signature or validity period: run
// ssh.CertChecker first.
func IdentityFromSSHCert(c *ssh.Certificate) (*CertIdentity, error) {
	if c == nil {
		return nil, errors.New("decode SSH cert identity: nil certificate")
	}
	id, err := identityFromSSHCert(c)
	if err != nil {
		return nil, fmt.Errorf("decode SSH cert identity %q: %w", truncate(c.KeyId), err)
	}
	return id, nil
}

func identityFromSSHCert(c *ssh.Certificate) (*CertIdentity, error) {
	if c.CertType != ssh.UserCert {
		return nil, fmt.Errorf("certificate type %d is not a user certificate", c.CertType)
	}
	if err := identity.ValidateUsername(c.KeyId); err != nil {
		return nil, fmt.Errorf("key ID: %w", err)
	}
	if err := validateUserPrincipals(c.ValidPrincipals); err != nil {
		return nil, err
	}
	if err := checkInternalPrincipals(c.KeyId, c.ValidPrincipals); err != nil {
		return nil, err
	}
	if c.ValidBefore > math.MaxInt64 {
		return nil, errors.New("certificate never expires")
	}
	id := &CertIdentity{
		Username:   c.KeyId,
		Principals: append([]string(nil), c.ValidPrincipals...),
		Expires:    time.Unix(int64(c.ValidBefore), 0),
	}
	rolesJSON, ok := c.Extensions[ExtRoles]
	if !ok {
		return nil, fmt.Errorf("missing %s extension", ExtRoles)
	}
	var err error
	if id.Roles, err = decodeStringList(rolesJSON, MaxRoles); err != nil {
		return nil, fmt.Errorf("%s: %w", ExtRoles, err)
	}
	if err := validateRoles(id.Roles); err != nil {
		return nil, fmt.Errorf("%s: %w", ExtRoles, err)
	}
	if v, ok := c.Extensions[ExtTraits]; ok {
		if id.Traits, err = decodeTraits(v); err != nil {
			return nil, fmt.Errorf("%s: %w", ExtTraits, err)
		}
	}
	if v, ok := c.Extensions[ExtRequests]; ok {
		if id.RequestIDs, err = decodeStringList(v, MaxRequestIDs); err != nil {
			return nil, fmt.Errorf("%s: %w", ExtRequests, err)
		}
		if err := validateRequestIDs(id.RequestIDs); err != nil {
			return nil, fmt.Errorf("%s: %w", ExtRequests, err)
		}
	}
	if v, ok := c.Extensions[ExtIssued]; ok {
		if id.Issued, err = decodeTime(v); err != nil {
			return nil, fmt.Errorf("%s: %w", ExtIssued, err)
		}
	} else {
		if c.ValidAfter > math.MaxInt64 {
			return nil, errors.New("certificate is never valid")
		}
		id.Issued = time.Unix(int64(c.ValidAfter), 0)
	}
	if v, ok := c.Extensions[ExtBotGeneration]; ok {
		if id.BotGeneration, err = decodeGeneration(v); err != nil {
			return nil, fmt.Errorf("%s: %w", ExtBotGeneration, err)
		}
		if id.BotInstance, err = decodeString(c.Extensions[ExtBotInstance], maxNameLen); err != nil {
			return nil, fmt.Errorf("%s: %w", ExtBotInstance, err)
		}
		if err := validateID(id.BotInstance); err != nil {
			return nil, fmt.Errorf("%s: %w", ExtBotInstance, err)
		}
	}
	if v, ok := c.Extensions[ExtMFADevice]; ok {
		if id.MFADevice, err = decodeString(v, maxNameLen); err != nil {
			return nil, fmt.Errorf("%s: %w", ExtMFADevice, err)
		}
		if err := validateID(id.MFADevice); err != nil {
			return nil, fmt.Errorf("%s: %w", ExtMFADevice, err)
		}
	}
	if v, ok := c.Extensions[ExtSessionMFA]; ok {
		if id.SessionMFA, err = decodeSessionMFA(v); err != nil {
			return nil, fmt.Errorf("%s: %w", ExtSessionMFA, err)
		}
	}
	return id, nil
}
