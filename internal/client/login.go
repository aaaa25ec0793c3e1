package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/wire"
)

// LoginOptions are the inputs of Login.
type LoginOptions struct {
	Proxy    string
	User     string
	Password string
	OTP      string
	TTL      time.Duration
	// CAPin, if set, must equal the cluster CA fingerprint.
	CAPin string
	// Insecure accepts a cluster CA that differs from the pinned one (tests).
	Insecure bool
	// Out receives notices such as the CA fingerprint on first contact.
	Out io.Writer
}

// TrustCluster contacts a proxy, checks its CA against the pin store (and
// an explicit pin) and returns an API client that trusts that CA.
func TrustCluster(ctx context.Context, dir, proxy, pin string, insecure bool, out io.Writer) (*api.Client, *api.PingResponse, error) {
	probe, err := api.NewClient(api.ClientConfig{Addr: proxy, Insecure: true, Timeout: 15 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	defer probe.Close()
	ping, err := probe.Ping(ctx)
	if err != nil {
		return nil, nil, err
	}
	if pin != "" && !strings.EqualFold(pin, ping.TLSCAFingerprint) {
		return nil, nil, fmt.Errorf("the proxy %s presented CA %s, not the expected %s: refusing to continue", proxy, ping.TLSCAFingerprint, pin)
	}
	pins := readPins(dir)
	switch known, ok := pins[proxy]; {
	case ok && known != ping.TLSCAFingerprint && !insecure:
		return nil, nil, fmt.Errorf("WARNING: the CA of cluster at %s changed (pinned %s, now %s). "+
			"This may be an attack. If the cluster was rebuilt, remove %q from %s and log in again",
			proxy, known, ping.TLSCAFingerprint, proxy, filepath.Join(dir, filePins))
	case !ok:
		fmt.Fprintf(out, "Trusting cluster %q at %s, CA fingerprint %s\n", ping.Cluster, proxy, ping.TLSCAFingerprint)
		pins[proxy] = ping.TLSCAFingerprint
		if err := writePins(dir, pins); err != nil {
			return nil, nil, err
		}
	}
	pool, err := certPool(ping.TLSCA)
	if err != nil {
		return nil, nil, err
	}
	c, err := api.NewClient(api.ClientConfig{Addr: proxy, RootCAs: pool})
	return c, ping, err
}

func readPins(dir string) map[string]string {
	m := map[string]string{}
	if data, err := os.ReadFile(filepath.Join(dir, filePins)); err == nil {
		_ = json.Unmarshal(data, &m)
	}
	return m
}

func writePins(dir string, m map[string]string) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return idfile.WriteAtomic(filepath.Join(dir, filePins), data, 0o600)
}

// trustAndKey is the start of every login: TrustCluster, then the key pair
// the certificates will be for. The caller closes the client.
func trustAndKey(ctx context.Context, dir, proxy, pin string, insecure bool, out io.Writer) (*api.Client, []byte, ssh.PublicKey, error) {
	c, _, err := TrustCluster(ctx, dir, proxy, pin, insecure, out)
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, _, pub, err := newKey()
	if err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	return c, keyPEM, pub, nil
}

// Login authenticates and stores a new profile. The private key is made
// here and never sent anywhere.
func Login(ctx context.Context, dir string, opt LoginOptions) (*Profile, error) {
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	if opt.User == "" {
		return nil, errors.New("--user is required")
	}
	c, keyPEM, pub, err := trustAndKey(ctx, dir, opt.Proxy, opt.CAPin, opt.Insecure, opt.Out)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	resp, err := c.Login(ctx, wire.LoginRequest{User: opt.User, Password: opt.Password, OTP: opt.OTP,
		PublicKey: strings.TrimSpace(string(marshalPub(pub))), TTL: opt.TTL})
	if err != nil {
		if errors.Is(err, wire.ErrUnauthenticated) {
			return nil, fmt.Errorf("login failed: %v", err)
		}
		return nil, err
	}
	return saveLogin(ctx, c, dir, opt.Proxy, keyPEM, pub, resp)
}

// CompleteSignup completes a signup begun with c (a client from
// TrustCluster for proxy) and logs in with the same step: a key pair is
// made here and the certificates auth returns for it are saved as the
// profile in dir, as Login does. The TOTP code is spent by the signup, so a
// separate login would need the next one.
func CompleteSignup(ctx context.Context, c *api.Client, dir, proxy, token, password, otp string) (*Profile, error) {
	keyPEM, _, pub, err := newKey()
	if err != nil {
		return nil, err
	}
	resp, err := c.CompleteSignup(ctx, wire.SignupRequest{Token: token, Password: password, OTP: otp,
		PublicKey: strings.TrimSpace(string(marshalPub(pub)))})
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, errors.New("signup complete, but the cluster returned no certificates: log in with warden login")
	}
	return saveLogin(ctx, c, dir, proxy, keyPEM, pub, resp)
}

// AdminClient returns an API client for administrative commands: the local
// admin identity in dataDir when readable (on the auth host), otherwise the
// logged-in user's profile.
func AdminClient(dataDir, profileDir string) (*api.Client, string, error) {
	var noAdmin error
	if dataDir != "" {
		path := idfile.AdminPath(dataDir)
		id, err := idfile.Read(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			noAdmin = fmt.Errorf("no local admin identity in %s (admin commands on the auth host use the data directory of "+
				"`warden start`: give the same --data-dir, or set WARDEN_DATA_DIR)", dataDir)
		case err != nil:
			noAdmin = fmt.Errorf("cannot read the local admin identity %s (run admin commands as the OS user that runs `warden start`): %v", path, err)
		}
		if err == nil {
			cert, err := id.TLSCertificate()
			if err != nil {
				return nil, "", err
			}
			pool, err := id.RootCAs()
			if err != nil {
				return nil, "", err
			}
			c, err := api.NewClient(api.ClientConfig{Addr: id.ProxyAddr, RootCAs: pool, Certificate: cert})
			return c, "local admin identity", err
		}
	}
	p, err := LoadProfile(profileDir)
	if err != nil {
		if noAdmin == nil {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("%v; and %v", noAdmin, err)
	}
	if err := p.CheckValid(time.Now()); err != nil {
		return nil, "", err
	}
	c, err := p.APIClient()
	return c, "user " + p.User, err
}

// UseRequest replaces the profile's certificates with ones that carry an
// approved access request (a fresh key pair, made here).
func UseRequest(ctx context.Context, p *Profile, id string) (*Profile, error) {
	c, err := p.APIClient()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	keyPEM, _, pub, err := newKey()
	if err != nil {
		return nil, err
	}
	resp, err := c.UseAccessRequest(ctx, id, strings.TrimSpace(string(marshalPub(pub))))
	if err != nil {
		return nil, err
	}
	next := *p
	next.Roles, next.Logins, next.Expires, next.Requests = resp.Roles, resp.Logins, resp.Expires, []string{id}
	if err := save(p.dir, &next, keyPEM, pub, resp); err != nil {
		return nil, err
	}
	return &next, nil
}
