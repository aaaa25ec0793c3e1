// Package idfile reads and writes identity files (a private key with its
// certificates, for the local admin, a node or a user profile) and writes
// files atomically, so a crash never leaves half a key on disk.
package idfile

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// File is a private key with its certificates, as stored on disk for
// the local admin and for a node (0600, written atomically).
type File struct {
	// Kind is "admin" or "node".
	Kind      string `json:"kind"`
	ProxyAddr string `json:"proxy_addr"`
	Cluster   string `json:"cluster"`
	NodeID    string `json:"node_id,omitempty"`
	NodeName  string `json:"node_name,omitempty"`
	// PrivateKey is an OpenSSH PEM private key (Ed25519).
	PrivateKey string   `json:"private_key"`
	SSHCert    string   `json:"ssh_cert,omitempty"`
	TLSCert    string   `json:"tls_cert"`
	TLSCA      string   `json:"tls_ca"`
	HostCAs    []string `json:"host_cas,omitempty"`
	UserCAs    []string `json:"user_cas,omitempty"`
	// TLSServerCert is a proxy's TLS server certificate (PEM), for the
	// same key.
	TLSServerCert string `json:"tls_server_cert,omitempty"`
}

// NewPrivateKey returns a fresh Ed25519 key as an OpenSSH PEM.
func NewPrivateKey() (string, ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return "", nil, err
	}
	return string(pem.EncodeToMemory(block)), priv, nil
}

// AdminPath is where the auth service writes the local admin
// identity used by admin commands on the same machine.
func AdminPath(dataDir string) string { return filepath.Join(dataDir, "admin-identity.json") }

// Node is a node identity's name, or its id when it has none.
func (f *File) Node() string {
	if f.NodeName != "" {
		return f.NodeName
	}
	return f.NodeID
}

// Read loads an identity file.
func Read(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return &f, nil
}

// Write stores the identity atomically with mode 0600.
func (f *File) Write(path string) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return WriteAtomic(path, data, 0o600)
}

// WriteAtomic writes data to a temp file, fsyncs it and renames it over
// path, so a crash leaves either the old or the new content.
func WriteAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Signer returns the private key as an ssh.Signer and a crypto.Signer.
func (f *File) Signer() (ssh.Signer, crypto.Signer, error) {
	raw, err := ssh.ParseRawPrivateKey([]byte(f.PrivateKey))
	if err != nil {
		return nil, nil, fmt.Errorf("identity private key: %w", err)
	}
	var cs crypto.Signer
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		cs = *k
	case crypto.Signer:
		cs = k
	default:
		return nil, nil, errors.New("identity private key: unsupported type")
	}
	s, err := ssh.NewSignerFromSigner(cs)
	if err != nil {
		return nil, nil, err
	}
	return s, cs, nil
}

// TLSCertificate returns the TLS client certificate.
func (f *File) TLSCertificate() (*tls.Certificate, error) {
	_, cs, err := f.Signer()
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode([]byte(f.TLSCert))
	if block == nil {
		return nil, errors.New("identity: no TLS certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("identity TLS certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: cs, Leaf: leaf}, nil
}

// TLSServerCertificate returns a proxy's TLS server certificate.
func (f *File) TLSServerCertificate() (*tls.Certificate, error) {
	c, err := (&File{PrivateKey: f.PrivateKey, TLSCert: f.TLSServerCert}).TLSCertificate()
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	return c, nil
}

// RootCAs returns a pool with the cluster TLS CA.
func (f *File) RootCAs() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(f.TLSCA)) {
		return nil, errors.New("identity: invalid TLS CA")
	}
	return pool, nil
}

// CertSigner returns the SSH certificate signer.
func (f *File) CertSigner() (ssh.Signer, *ssh.Certificate, error) {
	s, _, err := f.Signer()
	if err != nil {
		return nil, nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(f.SSHCert))
	if err != nil {
		return nil, nil, fmt.Errorf("identity ssh certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, nil, errors.New("identity: ssh_cert is not a certificate")
	}
	cs, err := ssh.NewCertSigner(cert, s)
	if err != nil {
		return nil, nil, err
	}
	return cs, cert, nil
}

// ParseAuthorizedKeys parses authorized_keys lines.
func ParseAuthorizedKeys(lines []string) ([]ssh.PublicKey, error) {
	out := make([]ssh.PublicKey, 0, len(lines))
	for _, l := range lines {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}
