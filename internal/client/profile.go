// Package client is the user side of Warden: the profile under ~/.warden,
// login, and the API client built from it. SSH itself lives in sshclient.
package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/wire"
)

// Profile is the logged-in state of the CLI.
type Profile struct {
	Proxy         string              `json:"proxy"`
	Cluster       string              `json:"cluster"`
	User          string              `json:"user"`
	Roles         []string            `json:"roles"`
	Logins        []string            `json:"logins"`
	Expires       time.Time           `json:"expires"`
	CAFingerprint string              `json:"ca_fingerprint"`
	Traits        map[string][]string `json:"traits,omitempty"`
	// Requests are the access requests the certificates carry.
	Requests []string `json:"requests,omitempty"`

	dir string
}

// Dir returns the profile directory: $WARDEN_HOME or ~/.warden.
func Dir() (string, error) {
	if d := os.Getenv("WARDEN_HOME"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find your home directory: %w", err)
	}
	return filepath.Join(home, ".warden"), nil
}

// File names inside the profile directory.
const (
	fileProfile    = "profile.json"
	fileKey        = "key"
	filePub        = "key.pub"
	fileCert       = "key-cert.pub"
	fileTLSCert    = "tls.crt"
	fileTLSCA      = "tls-ca.crt"
	fileKnownHosts = "known_hosts"
	filePins       = "known_proxies.json"
)

// ErrNotLoggedIn is returned when there is no profile.
var ErrNotLoggedIn = errors.New("not logged in: run warden login --proxy HOST:PORT --user NAME")

// LoadProfile reads the current profile.
func LoadProfile(dir string) (*Profile, error) {
	data, err := os.ReadFile(filepath.Join(dir, fileProfile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotLoggedIn
	}
	if err != nil {
		return nil, err
	}
	var p Profile
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("profile %s is damaged (%v): run warden login again", dir, err)
	}
	p.dir = dir
	return &p, nil
}

// Path returns the path of a profile file.
func (p *Profile) Path(name string) string { return filepath.Join(p.dir, name) }

// KeyPath, CertPath and KnownHostsPath are used by OpenSSH configuration.
func (p *Profile) KeyPath() string        { return p.Path(fileKey) }
func (p *Profile) CertPath() string       { return p.Path(fileCert) }
func (p *Profile) KnownHostsPath() string { return p.Path(fileKnownHosts) }

// Valid reports whether the certificates are still valid at now.
func (p *Profile) Valid(now time.Time) bool { return now.Before(p.Expires) }

// CheckValid returns a clear error when the certificates expired.
func (p *Profile) CheckValid(now time.Time) error {
	if !p.Valid(now) {
		return fmt.Errorf("your Warden certificates expired at %s: run warden login", p.Expires.Local().Format(time.RFC1123))
	}
	return nil
}

// Signer returns the SSH certificate signer.
func (p *Profile) Signer() (ssh.Signer, *ssh.Certificate, error) {
	keyPEM, err := os.ReadFile(p.Path(fileKey))
	if err != nil {
		return nil, nil, err
	}
	certText, err := os.ReadFile(p.Path(fileCert))
	if err != nil {
		return nil, nil, err
	}
	id := idfile.File{PrivateKey: string(keyPEM), SSHCert: string(certText)}
	return id.CertSigner()
}

// HostCAs returns the trusted host CA keys from known_hosts.
func (p *Profile) HostCAs() ([]ssh.PublicKey, error) {
	data, err := os.ReadFile(p.Path(fileKnownHosts))
	if err != nil {
		return nil, err
	}
	var out []ssh.PublicKey
	for len(data) > 0 {
		marker, _, key, _, rest, err := ssh.ParseKnownHosts(data)
		if err != nil {
			break
		}
		if marker == "cert-authority" {
			out = append(out, key)
		}
		data = rest
	}
	if len(out) == 0 {
		return nil, errors.New("no host CA in the profile: run warden login again")
	}
	return out, nil
}

// APIClient returns an API client authenticated as the profile's user.
func (p *Profile) APIClient() (*api.Client, error) {
	keyPEM, err := os.ReadFile(p.Path(fileKey))
	if err != nil {
		return nil, err
	}
	tlsCert, err := os.ReadFile(p.Path(fileTLSCert))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(p.Path(fileTLSCA))
	if err != nil {
		return nil, err
	}
	id := idfile.File{PrivateKey: string(keyPEM), TLSCert: string(tlsCert), TLSCA: string(caPEM)}
	cert, err := id.TLSCertificate()
	if err != nil {
		return nil, err
	}
	pool, err := id.RootCAs()
	if err != nil {
		return nil, err
	}
	return api.NewClient(api.ClientConfig{Addr: p.Proxy, RootCAs: pool, Certificate: cert})
}

// Logout removes keys and certificates (pins are kept).
func Logout(dir string) error {
	var errs []error
	for _, f := range []string{fileProfile, fileKey, filePub, fileCert, fileTLSCert, fileKnownHosts, fileTLSCA} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// save writes the profile and its key material (all 0600, dir 0700).
// saveLogin saves the profile of a login (resp, for the key pair keyPEM and
// pub) through proxy in dir, with the pin of the cluster c reached, and
// returns it.
func saveLogin(ctx context.Context, c *api.Client, dir, proxy string, keyPEM []byte, pub ssh.PublicKey, resp *wire.LoginResponse) (*Profile, error) {
	p := &Profile{Proxy: proxy, Cluster: resp.Cluster, User: resp.User, Roles: resp.Roles, Logins: resp.Logins,
		Expires: resp.Expires, dir: dir}
	if ping, err := c.Ping(ctx); err == nil {
		p.CAFingerprint = ping.TLSCAFingerprint
	}
	if err := save(dir, p, keyPEM, pub, resp); err != nil {
		return nil, err
	}
	return p, nil
}

func save(dir string, p *Profile, keyPEM []byte, pub ssh.PublicKey, resp *wire.LoginResponse) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	var kh strings.Builder
	for _, ca := range resp.HostCAs {
		fmt.Fprintf(&kh, "@cert-authority * %s\n", strings.TrimSpace(ca))
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{fileKey, keyPEM},
		{filePub, ssh.MarshalAuthorizedKey(pub)},
		{fileCert, []byte(resp.SSHCert + "\n")},
		{fileTLSCert, []byte(resp.TLSCert)},
		{fileTLSCA, []byte(resp.TLSCA)},
		{fileKnownHosts, []byte(kh.String())},
		{fileProfile, data}, // last: a profile exists only with its keys
	}
	for _, f := range files {
		if err := idfile.WriteAtomic(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

func newKey() ([]byte, ed25519.PrivateKey, ssh.PublicKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, nil, nil, err
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(block), priv, pub, nil
}

func certPool(pemData string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(pemData)) {
		return nil, errors.New("invalid CA certificate")
	}
	return pool, nil
}
