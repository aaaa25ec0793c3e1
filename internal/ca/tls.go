package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/warden-sh/warden/internal/identity"
)

// TLS identity kinds, carried as the certificate's OrganizationalUnit.
const (
	KindUser  = "user"
	KindNode  = "node"
	KindAdmin = "admin"
	// KindProxy is a proxy running apart from auth (its CommonName is its
	// registration id, as for a node).
	KindProxy = "proxy"
)

// OIDTraits is the X.509 extension carrying a client's traits as a JSON
// object (a DER OCTET STRING around the JSON).
var OIDTraits = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 1, 1}

// More identity extensions, each a DER OCTET STRING around the same JSON
// value as the SSH extension of that name: the access requests
// (ExtRequests), the issue time (ExtIssued) and the MFA device used at login
// (ExtMFADevice).
var (
	OIDRequests  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 1, 2}
	OIDIssued    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 1, 3}
	OIDMFADevice = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 1, 4}
	// OIDBotGeneration is a bot's renewable identity's generation (a JSON
	// number), in an arc of its own for bots.
	OIDBotGeneration = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 2, 1}
	// OIDBotInstance names the join the generation counts in (a JSON
	// string).
	OIDBotInstance = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 2, 2}
)

// TLSIdentity is the Warden identity in an X.509 client certificate.
type TLSIdentity struct {
	// Username is the CommonName for KindUser and KindAdmin.
	Username string
	// Kind is KindUser, KindNode or KindAdmin.
	Kind string
	// Roles are the Organization values; decoding returns them sorted, as
	// DER keeps no order among them.
	Roles  []string
	Traits map[string][]string
	// NodeID is set for KindNode; it is the certificate's CommonName.
	NodeID string
	// RequestIDs are the access requests the certificate was issued for.
	RequestIDs []string
	// Issued is when auth decided to issue the certificate; zero means now
	// when issuing. Decoding falls back to NotBefore (earlier) without it.
	Issued time.Time
	// MFADevice is the MFA device used at login, if any.
	MFADevice string
	// BotGeneration is the generation of a bot's renewable identity (0:
	// none).
	BotGeneration uint64
	// BotInstance is the bot instance (one join) the generation counts in;
	// set exactly when BotGeneration is.
	BotInstance string
}

func (id *TLSIdentity) validate() error {
	switch id.Kind {
	case KindUser, KindAdmin:
		if err := identity.ValidateUsername(id.Username); err != nil {
			return err
		}
		if id.NodeID != "" {
			return fmt.Errorf("%s identity with a node ID", id.Kind)
		}
	case KindNode, KindProxy:
		if err := validateID(id.NodeID); err != nil {
			return fmt.Errorf("node ID: %w", err)
		}
		if id.Username != "" {
			return fmt.Errorf("%s identity with a username", id.Kind)
		}
	default:
		return fmt.Errorf("unknown identity kind %q", truncate(id.Kind))
	}
	if err := validateRoles(id.Roles); err != nil {
		return err
	}
	if err := validateRequestIDs(id.RequestIDs); err != nil {
		return err
	}
	if id.MFADevice != "" {
		if err := validateID(id.MFADevice); err != nil {
			return fmt.Errorf("MFA device: %w", err)
		}
	}
	if (id.BotGeneration > 0) != (id.BotInstance != "") {
		return errors.New("a bot generation goes with a bot instance")
	}
	if id.BotInstance != "" {
		if err := validateID(id.BotInstance); err != nil {
			return fmt.Errorf("bot instance: %w", err)
		}
	}
	return validateTraits(id.Traits)
}

// IssueTLSClient signs an X.509 client certificate (ExtKeyUsage ClientAuth)
// for pub with the TLS CA and returns it as DER.
func (a *Authority) IssueTLSClient(pub crypto.PublicKey, id TLSIdentity, ttl time.Duration) ([]byte, error) {
	der, err := a.issueTLSClient(pub, id, ttl)
	if err != nil {
		name := id.Username
		if id.Kind == KindNode || id.Kind == KindProxy {
			name = id.NodeID
		}
		return nil, fmt.Errorf("issue TLS client cert for %s %q: %w", truncate(id.Kind), truncate(name), err)
	}
	return der, nil
}

func (a *Authority) issueTLSClient(pub crypto.PublicKey, id TLSIdentity, ttl time.Duration) ([]byte, error) {
	if err := id.validate(); err != nil {
		return nil, err
	}
	cn := id.Username
	if id.Kind == KindNode || id.Kind == KindProxy {
		cn = id.NodeID
	}
	tmpl, err := a.leafTemplate(pub, ttl)
	if err != nil {
		return nil, err
	}
	tmpl.Subject = pkix.Name{
		CommonName:         cn,
		Organization:       slices.Clone(id.Roles),
		OrganizationalUnit: []string{id.Kind},
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	addExt := func(oid asn1.ObjectIdentifier, js string) error {
		val, err := asn1.Marshal([]byte(js))
		if err != nil {
			return err
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oid, Value: val})
		return nil
	}
	if len(id.Traits) > 0 {
		js, err := marshalExt(id.Traits)
		if err == nil {
			err = addExt(OIDTraits, js)
		}
		if err != nil {
			return nil, fmt.Errorf("traits: %w", err)
		}
	}
	if len(id.RequestIDs) > 0 {
		js, err := marshalExt(id.RequestIDs)
		if err == nil {
			err = addExt(OIDRequests, js)
		}
		if err != nil {
			return nil, fmt.Errorf("access request IDs: %w", err)
		}
	}
	issued, err := a.issued(id.Issued)
	if err != nil {
		return nil, err
	}
	if err := addExt(OIDIssued, encodeTime(issued)); err != nil {
		return nil, fmt.Errorf("issue time: %w", err)
	}
	if id.MFADevice != "" {
		if err := addExt(OIDMFADevice, `"`+id.MFADevice+`"`); err != nil {
			return nil, fmt.Errorf("MFA device: %w", err)
		}
	}
	if id.BotGeneration > 0 {
		if err := addExt(OIDBotGeneration, strconv.FormatUint(id.BotGeneration, 10)); err != nil {
			return nil, fmt.Errorf("bot generation: %w", err)
		}
		if err := addExt(OIDBotInstance, `"`+id.BotInstance+`"`); err != nil {
			return nil, fmt.Errorf("bot instance: %w", err)
		}
	}
	return a.signLeaf(tmpl, pub)
}

// IssueTLSServer signs an X.509 server certificate (ExtKeyUsage
// ServerAuth) for Warden's own endpoints.
func (a *Authority) IssueTLSServer(pub crypto.PublicKey, dnsNames []string, ips []net.IP, ttl time.Duration) ([]byte, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, errors.New("issue TLS server cert: no DNS names or IP addresses")
	}
	if len(dnsNames)+len(ips) > MaxPrincipals {
		return nil, fmt.Errorf("issue TLS server cert: more than %d names", MaxPrincipals)
	}
	for _, n := range dnsNames {
		if err := validateDNSName(n); err != nil {
			return nil, fmt.Errorf("issue TLS server cert: %w", err)
		}
	}
	for _, ip := range ips {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, fmt.Errorf("issue TLS server cert: invalid IP address %v", ip)
		}
	}
	tmpl, err := a.leafTemplate(pub, ttl)
	if err != nil {
		return nil, fmt.Errorf("issue TLS server cert: %w", err)
	}
	var cn string
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	} else {
		cn = ips[0].String()
	}
	tmpl.Subject = pkix.Name{CommonName: cn}
	tmpl.DNSNames = slices.Clone(dnsNames)
	tmpl.IPAddresses = slices.Clone(ips)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := a.signLeaf(tmpl, pub)
	if err != nil {
		return nil, fmt.Errorf("issue TLS server cert for %q: %w", cn, err)
	}
	return der, nil
}

func validateDNSName(n string) error {
	// A leading "*." wildcard label is allowed; the rest is host-name shaped.
	rest := n
	if len(n) > 2 && n[:2] == "*." {
		rest = n[2:]
	}
	if len(n) > maxHostnameLen || !isToken(rest, ".-") || rest[0] == '-' || rest[0] == '.' || rest[len(rest)-1] == '.' {
		return fmt.Errorf("invalid DNS name %q", truncate(n))
	}
	return nil
}

func (a *Authority) leafTemplate(pub crypto.PublicKey, ttl time.Duration) (*x509.Certificate, error) {
	if err := checkTLSKey(pub); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("TTL %v is not positive", ttl)
	}
	if ttl > MaxCertTTL {
		return nil, fmt.Errorf("TTL %v is longer than the maximum %v", ttl, MaxCertTTL)
	}
	now := a.now()
	notAfter := now.Add(ttl)
	if notAfter.After(a.tlsCert.NotAfter) {
		return nil, fmt.Errorf("certificate would outlive the TLS CA (expires %s)", a.tlsCert.NotAfter.Format(time.RFC3339))
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ku := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              ku,
		BasicConstraintsValid: true,
	}, nil
}

func (a *Authority) signLeaf(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	if der, err := a.signLeafDER(tmpl, pub); err == nil {
		if a.onLeaf != nil {
			a.onLeaf(tmpl, pub, der)
		}
		return der, nil
	} else if !errors.Is(err, errLeafTemplateNotCovered) {
		return nil, fmt.Errorf("sign: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.tlsCert, pub, a.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return der, nil
}

func checkTLSKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil {
			return errors.New("missing public key")
		}
		switch k.Curve.Params().BitSize {
		case 256, 384, 521:
			return nil
		}
		return errors.New("unsupported ECDSA curve")
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return errors.New("invalid Ed25519 public key")
		}
		return nil
	case *rsa.PublicKey:
		if k == nil {
			return errors.New("missing public key")
		}
		if bits := k.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("RSA key of %d bits refused: at least %d are required", bits, minRSABits)
		}
		return nil
	case nil:
		return errors.New("missing public key")
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
}

// IdentityFromTLSCert decodes and validates the identity in a client
// certificate. It does not verify the chain: use VerifyTLSClient, or verify
// against CertPool first.
func IdentityFromTLSCert(c *x509.Certificate) (*TLSIdentity, error) {
	if c == nil {
		return nil, errors.New("decode TLS cert identity: nil certificate")
	}
	id, err := identityFromTLSCert(c)
	if err != nil {
		return nil, fmt.Errorf("decode TLS cert identity %q: %w", truncate(c.Subject.CommonName), err)
	}
	return id, nil
}

func identityFromTLSCert(c *x509.Certificate) (*TLSIdentity, error) {
	if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil, errors.New("not a client certificate")
	}
	if c.IsCA {
		return nil, errors.New("CA certificate used as a client certificate")
	}
	if len(c.Subject.OrganizationalUnit) != 1 {
		return nil, fmt.Errorf("want one organizational unit (the kind), got %d", len(c.Subject.OrganizationalUnit))
	}
	if len(c.Subject.Organization) > MaxRoles {
		return nil, fmt.Errorf("%d roles, at most %d allowed", len(c.Subject.Organization), MaxRoles)
	}
	id := &TLSIdentity{Kind: c.Subject.OrganizationalUnit[0], Roles: slices.Clone(c.Subject.Organization)}
	if id.Roles == nil {
		id.Roles = []string{}
	}
	// DER encodes the organizations as a SET, which does not keep order.
	slices.Sort(id.Roles)
	if id.Kind == KindNode || id.Kind == KindProxy {
		id.NodeID = c.Subject.CommonName
	} else {
		id.Username = c.Subject.CommonName
	}
	seen := map[string]bool{}
	for _, ext := range c.Extensions {
		var name string
		switch {
		case ext.Id.Equal(OIDTraits):
			name = "traits"
		case ext.Id.Equal(OIDRequests):
			name = "access requests"
		case ext.Id.Equal(OIDIssued):
			name = "issue time"
		case ext.Id.Equal(OIDMFADevice):
			name = "MFA device"
		case ext.Id.Equal(OIDBotGeneration):
			name = "bot generation"
		case ext.Id.Equal(OIDBotInstance):
			name = "bot instance"
		default:
			continue
		}
		if seen[name] {
			return nil, fmt.Errorf("duplicate %s extension", name)
		}
		seen[name] = true
		if len(ext.Value) > MaxExtensionLen+8 {
			return nil, fmt.Errorf("%s extension of %d bytes, at most %d allowed", name, len(ext.Value), MaxExtensionLen)
		}
		var js []byte
		rest, err := asn1.Unmarshal(ext.Value, &js)
		if err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("%s extension is not a DER OCTET STRING", name)
		}
		switch name {
		case "traits":
			id.Traits, err = decodeTraits(string(js))
		case "access requests":
			id.RequestIDs, err = decodeStringList(string(js), MaxRequestIDs)
		case "issue time":
			id.Issued, err = decodeTime(string(js))
		case "MFA device":
			id.MFADevice, err = decodeString(string(js), maxNameLen)
		case "bot generation":
			id.BotGeneration, err = decodeGeneration(string(js))
		case "bot instance":
			id.BotInstance, err = decodeString(string(js), maxNameLen)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if id.Issued.IsZero() {
		id.Issued = c.NotBefore
	}
	if err := id.validate(); err != nil {
		return nil, err
	}
	return id, nil
}

// VerifyTLSClient verifies that c chains to this TLS CA for client
// authentication at the authority's current time, then decodes its
// identity.
func (a *Authority) VerifyTLSClient(c *x509.Certificate) (*TLSIdentity, error) {
	if c == nil {
		return nil, errors.New("verify TLS client cert: nil certificate")
	}
	_, err := c.Verify(x509.VerifyOptions{
		Roots:       a.tlsPool,
		CurrentTime: a.now(),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("verify TLS client cert %q: %w", truncate(c.Subject.CommonName), err)
	}
	return IdentityFromTLSCert(c)
}
