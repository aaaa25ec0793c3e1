package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ssh"
)

// TLSCAValidity is the lifetime of a generated TLS CA certificate.
const TLSCAValidity = 10 * 365 * 24 * time.Hour

// clockSkew back-dates NotBefore/ValidAfter so a peer whose clock is a
// little behind still accepts a fresh certificate.
const clockSkew = time.Minute

// Keys is a cluster's CA key material as stored by the auth service. It
// holds private keys: keep it out of logs.
type Keys struct {
	ClusterName string `json:"cluster_name"`
	// UserCAKey and HostCAKey are OpenSSH PEM private keys (Ed25519).
	UserCAKey []byte `json:"user_ca_key"`
	HostCAKey []byte `json:"host_ca_key"`
	// TLSCAKey is a PKCS#8 PEM private key (ECDSA P-256).
	TLSCAKey []byte `json:"tls_ca_key"`
	// TLSCACert is the self-signed CA certificate, PEM.
	TLSCACert []byte `json:"tls_ca_cert"`
}

// String keeps key material out of fmt output.
func (k Keys) String() string { return fmt.Sprintf("ca.Keys{ClusterName:%q}", k.ClusterName) }

// GoString keeps key material out of %#v output.
func (k Keys) GoString() string { return k.String() }

// GenerateKeys makes fresh user and host SSH CAs and a TLS CA for
// clusterName.
func GenerateKeys(clusterName string) (*Keys, error) {
	return generateKeys(clusterName, time.Now())
}

func generateKeys(clusterName string, now time.Time) (*Keys, error) {
	if err := validateClusterName(clusterName); err != nil {
		return nil, fmt.Errorf("generate CA keys: %w", err)
	}
	k := &Keys{ClusterName: clusterName}
	var err error
	if k.UserCAKey, err = newSSHCAKey(clusterName + " user CA"); err != nil {
		return nil, fmt.Errorf("generate user CA for %q: %w", clusterName, err)
	}
	if k.HostCAKey, err = newSSHCAKey(clusterName + " host CA"); err != nil {
		return nil, fmt.Errorf("generate host CA for %q: %w", clusterName, err)
	}
	if k.TLSCAKey, k.TLSCACert, err = newTLSCA(clusterName, now); err != nil {
		return nil, fmt.Errorf("generate TLS CA for %q: %w", clusterName, err)
	}
	return k, nil
}

func newSSHCAKey(comment string) ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(block), nil
}

func newTLSCA(clusterName string, now time.Time) (keyPEM, certPEM []byte, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   clusterName + " Warden TLS CA",
			Organization: []string{clusterName},
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(TLSCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, nil, fmt.Errorf("self-sign: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return keyPEM, certPEM, nil
}

// randomSerial returns a positive random 127-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// Authority signs certificates with a cluster's CA keys. It is safe for
// concurrent use.
type Authority struct {
	clusterName string
	now         func() time.Time

	userSigner ssh.Signer
	hostSigner ssh.Signer

	tlsKey     crypto.Signer
	tlsCert    *x509.Certificate
	tlsCertPEM []byte
	tlsPool    *x509.CertPool

	// onLeaf, set by tests only, sees every leaf certificate signed.
	onLeaf func(tmpl *x509.Certificate, pub crypto.PublicKey, der []byte)
}

// New loads k. now is the clock used for validity periods; nil means
// time.Now.
func New(k *Keys, now func() time.Time) (*Authority, error) {
	if k == nil {
		return nil, errors.New("new authority: nil keys")
	}
	if err := validateClusterName(k.ClusterName); err != nil {
		return nil, fmt.Errorf("new authority: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	a := &Authority{clusterName: k.ClusterName, now: now}
	var err error
	if a.userSigner, err = loadSSHCAKey(k.UserCAKey); err != nil {
		return nil, fmt.Errorf("new authority %q: user CA: %w", k.ClusterName, err)
	}
	if a.hostSigner, err = loadSSHCAKey(k.HostCAKey); err != nil {
		return nil, fmt.Errorf("new authority %q: host CA: %w", k.ClusterName, err)
	}
	if ssh.FingerprintSHA256(a.userSigner.PublicKey()) == ssh.FingerprintSHA256(a.hostSigner.PublicKey()) {
		return nil, fmt.Errorf("new authority %q: user and host CA keys are the same key", k.ClusterName)
	}
	if err := a.loadTLSCA(k.TLSCAKey, k.TLSCACert); err != nil {
		return nil, fmt.Errorf("new authority %q: TLS CA: %w", k.ClusterName, err)
	}
	return a, nil
}

func loadSSHCAKey(pemBytes []byte) (ssh.Signer, error) {
	if len(pemBytes) == 0 {
		return nil, errors.New("missing private key")
	}
	raw, err := ssh.ParseRawPrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	var priv ed25519.PrivateKey
	switch k := raw.(type) {
	case ed25519.PrivateKey:
		priv = k
	case *ed25519.PrivateKey:
		priv = *k
	default:
		return nil, fmt.Errorf("private key is %T, want Ed25519", raw)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	return signer, nil
}

func (a *Authority) loadTLSCA(keyPEM, certPEM []byte) error {
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return errors.New("key is not a PEM PRIVATE KEY block")
	}
	raw, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return fmt.Errorf("parse key: %w", err)
	}
	key, ok := raw.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return fmt.Errorf("key is %T, want ECDSA P-256", raw)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return errors.New("certificate is not a PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return fmt.Errorf("parse certificate: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("certificate is not a CA certificate")
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return errors.New("certificate does not match the private key")
	}
	a.tlsKey = key
	a.tlsCert = cert
	a.tlsCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	a.tlsPool = x509.NewCertPool()
	a.tlsPool.AddCert(cert)
	return nil
}

// ClusterName is the cluster these CAs belong to.
func (a *Authority) ClusterName() string { return a.clusterName }

// UserCAPublicKey is the key sshd trusts via TrustedUserCAKeys.
func (a *Authority) UserCAPublicKey() ssh.PublicKey { return a.userSigner.PublicKey() }

// HostCAPublicKey is the key clients trust via @cert-authority.
func (a *Authority) HostCAPublicKey() ssh.PublicKey { return a.hostSigner.PublicKey() }

// TLSCACert is the parsed TLS CA certificate. Callers must not modify it.
func (a *Authority) TLSCACert() *x509.Certificate { return a.tlsCert }

// TLSCAPEM is the TLS CA certificate in PEM form.
func (a *Authority) TLSCAPEM() []byte { return append([]byte(nil), a.tlsCertPEM...) }

// CertPool returns a new pool holding only the TLS CA, for RootCAs and
// ClientCAs.
func (a *Authority) CertPool() *x509.CertPool { return a.tlsPool.Clone() }
