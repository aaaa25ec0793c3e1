package ca

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"
)

// ProxyPeerKind is the organizational unit of a proxy's peering
// certificate: the one identity the proxies' peer listeners accept. The
// API does not know the kind (IdentityFromTLSCert refuses it), so a
// peering certificate opens nothing but the peer listener.
const ProxyPeerKind = "proxy"

// IssueProxyPeer signs a proxy's peering certificate: both server and
// client authentication (each proxy dials and is dialled), the proxy's ID
// as the common name and ProxyPeerKind as the only organizational unit.
// Peers are told apart by ID, not by host name: the dialling proxy checks
// the ID it found in the shared state.
func (a *Authority) IssueProxyPeer(pub crypto.PublicKey, proxyID string, ttl time.Duration) ([]byte, error) {
	if err := validateID(proxyID); err != nil {
		return nil, fmt.Errorf("issue proxy peer cert: proxy ID: %w", err)
	}
	tmpl, err := a.leafTemplate(pub, ttl)
	if err != nil {
		return nil, fmt.Errorf("issue proxy peer cert: %w", err)
	}
	tmpl.Subject = pkix.Name{CommonName: proxyID, OrganizationalUnit: []string{ProxyPeerKind}}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	return a.signLeaf(tmpl, pub)
}

// VerifyProxyPeer verifies that chain[0] chains to roots for usage at now
// and is a proxy's peering certificate, and returns the proxy's ID. A
// node's, user's or admin's certificate from the same CA is refused.
func VerifyProxyPeer(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage, now time.Time) (string, error) {
	if len(chain) == 0 || chain[0] == nil {
		return "", errors.New("no peer certificate")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return "", fmt.Errorf("peer certificate %q: %w", truncate(leaf.Subject.CommonName), err)
	}
	if leaf.IsCA {
		return "", errors.New("a CA certificate is not a proxy's")
	}
	if ou := leaf.Subject.OrganizationalUnit; len(ou) != 1 || ou[0] != ProxyPeerKind {
		return "", fmt.Errorf("certificate %q is not a proxy's (kind %q): only proxies may peer",
			truncate(leaf.Subject.CommonName), truncate(fmt.Sprint(ou)))
	}
	if len(leaf.Subject.Organization) != 0 {
		return "", errors.New("a proxy's certificate carries no roles")
	}
	id := leaf.Subject.CommonName
	if err := validateID(id); err != nil {
		return "", fmt.Errorf("proxy ID: %w", err)
	}
	return id, nil
}

// Validate checks the identity as a certificate's would be checked (for an
// identity that arrives by other means, such as a proxy's forwarded dial).
func (id *TLSIdentity) Validate() error { return id.validate() }
