// Package bot is what `warden bot start` runs: it joins a bot (a single-use
// join token, or an OIDC join token with the CI job's ID token), keeps the
// bot's renewable identity in its data directory, renews it well before it
// expires, and keeps each output directory filled with certificates that
// plain ssh, scp, rsync and Ansible use as they are (a Warden profile plus
// an ssh_config), and a kubeconfig plain kubectl uses.
package bot

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/wire"
)

// Output is a directory kept filled with certificates for some of the
// bot's roles (none: all of them).
type Output struct {
	Dir   string
	Roles []string
}

// Config is what Run needs.
type Config struct {
	// Proxy is the proxy address (host:port); CAPin its TLS CA's
	// fingerprint, required to join.
	Proxy string
	CAPin string
	// DataDir keeps the bot's renewable identity (identity.json) and the
	// proxy pin.
	DataDir string
	// Token is a single-use join token; or JoinToken names an OIDC join
	// token and IDToken reads the CI job's ID token.
	Token     string
	JoinToken string
	IDToken   func() (string, error)
	Outputs   []Output
	// Binary is the warden executable the outputs' ssh_config runs as
	// ProxyCommand.
	Binary string
	// Oneshot: join or renew once, fill the outputs, return.
	Oneshot bool
	Log     *slog.Logger
	Now     func() time.Time
}

const identityFile = "identity.json"

// Run keeps the bot's identity and outputs fresh until ctx ends (or once,
// with Oneshot). A refusal by auth (the bot removed or locked, a copy of
// its identity detected) ends it with the reason.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Outputs) == 0 {
		return errors.New("no output directory (--dest DIR)")
	}
	if err := SecureDir(cfg.DataDir); err != nil {
		return err
	}
	for _, o := range cfg.Outputs {
		if err := SecureDir(o.Dir); err != nil {
			return err
		}
	}
	b := &runner{cfg: cfg}
	id, err := idfile.Read(filepath.Join(cfg.DataDir, identityFile))
	switch {
	case err == nil && id.Kind == "bot" && b.valid(id):
		// Renew at once: the identity proves it is still the current
		// generation, and nothing needs a join token again.
		b.id = id
		if err := b.renew(ctx); err != nil {
			return err
		}
	case cfg.Token == "" && cfg.JoinToken == "":
		return fmt.Errorf("no valid bot identity in %s and no join token: give --token-file (or --join-token with an ID token)", cfg.DataDir)
	default:
		if err := b.join(ctx); err != nil {
			return err
		}
	}
	for {
		if err := b.writeOutputs(ctx); err != nil {
			if cfg.Oneshot || !retryable(err) {
				return err
			}
			cfg.Log.Warn("bot outputs not refreshed; retrying", "err", err)
		}
		if cfg.Oneshot {
			return nil
		}
		if err := b.waitAndRenew(ctx); err != nil {
			return err
		}
	}
}

type runner struct {
	cfg  Config
	id   *idfile.File
	ping *api.PingResponse
	// leaf is the identity's TLS certificate; received is when it came
	// (its NotBefore is set back for clock skew, so it does not say).
	leaf     *x509.Certificate
	received time.Time
}

func (b *runner) valid(id *idfile.File) bool {
	leaf, err := tlsLeaf(id.TLSCert)
	return err == nil && b.cfg.Now().Before(leaf.NotAfter)
}

func tlsLeaf(pemText string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, errors.New("no TLS certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// join spends the join token for a new identity.
func (b *runner) join(ctx context.Context) error {
	if b.cfg.CAPin == "" {
		return errors.New("joining needs the cluster's CA pin (--ca-pin, printed by warden bots add)")
	}
	c, ping, err := client.TrustCluster(ctx, b.cfg.DataDir, b.cfg.Proxy, b.cfg.CAPin, false, io.Discard)
	if err != nil {
		return err
	}
	defer c.Close()
	b.ping = ping
	keyPEM, _, pub, err := newKey()
	if err != nil {
		return err
	}
	req := wire.BotJoinRequest{Token: b.cfg.Token, JoinToken: b.cfg.JoinToken, PublicKey: pub}
	if b.cfg.JoinToken != "" {
		if b.cfg.IDToken == nil {
			return errors.New("an OIDC join needs the CI job's ID token (--id-token-file or --id-token-env)")
		}
		if req.IDToken, err = b.cfg.IDToken(); err != nil {
			return err
		}
	}
	resp, err := c.JoinBot(ctx, req)
	if err != nil {
		return fmt.Errorf("bot join refused: %w", err)
	}
	if err := b.store(keyPEM, resp); err != nil {
		return err
	}
	b.cfg.Log.Info("bot joined", "bot", resp.Bot, "instance", resp.Instance, "generation", resp.Generation, "expires", resp.Expires)
	return nil
}

// store keeps a new identity (atomically, 0600).
func (b *runner) store(keyPEM string, resp *wire.BotCerts) error {
	id := &idfile.File{Kind: "bot", ProxyAddr: b.cfg.Proxy, Cluster: resp.Cluster, NodeName: resp.Bot, PrivateKey: keyPEM,
		SSHCert: resp.SSHCert, TLSCert: resp.TLSCert, TLSCA: resp.TLSCA, HostCAs: resp.HostCAs, UserCAs: resp.UserCAs}
	leaf, err := tlsLeaf(id.TLSCert)
	if err != nil {
		return err
	}
	if err := id.Write(filepath.Join(b.cfg.DataDir, identityFile)); err != nil {
		return fmt.Errorf("write the bot identity: %w", err)
	}
	b.id, b.leaf, b.received = id, leaf, b.cfg.Now()
	return nil
}

// apiClient is a client presenting the current identity, on connections
// of its own: a connection keeps the certificate it was opened with.
func (b *runner) apiClient() (*api.Client, error) {
	cert, err := b.id.TLSCertificate()
	if err != nil {
		return nil, err
	}
	pool, err := b.id.RootCAs()
	if err != nil {
		return nil, err
	}
	return api.NewClient(api.ClientConfig{Addr: b.cfg.Proxy, RootCAs: pool, Certificate: cert})
}

// renew trades the identity for the next generation, with a new key.
func (b *runner) renew(ctx context.Context) error {
	c, err := b.apiClient()
	if err != nil {
		return err
	}
	defer c.Close()
	if b.ping == nil {
		if b.ping, err = c.Ping(ctx); err != nil {
			return err
		}
	}
	keyPEM, _, pub, err := newKey()
	if err != nil {
		return err
	}
	resp, err := c.RenewBotCerts(ctx, pub)
	if err != nil {
		return fmt.Errorf("bot renewal refused: %w", err)
	}
	if err := b.store(keyPEM, resp); err != nil {
		return err
	}
	b.cfg.Log.Info("bot identity renewed", "bot", resp.Bot, "instance", resp.Instance, "generation", resp.Generation, "expires", resp.Expires)
	return nil
}

// writeOutputs gets and writes every output's certificates.
func (b *runner) writeOutputs(ctx context.Context) error {
	c, err := b.apiClient()
	if err != nil {
		return err
	}
	defer c.Close()
	for _, o := range b.cfg.Outputs {
		keyPEM, pub, err := outputKey(o.Dir)
		if err != nil {
			return err
		}
		resp, err := c.BotOutputCerts(ctx, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), o.Roles)
		if err != nil {
			return fmt.Errorf("certificates for %s refused: %w", o.Dir, err)
		}
		if err := client.SaveProfile(o.Dir, b.cfg.Proxy, b.ping.TLSCAFingerprint, keyPEM, pub, &resp.LoginResponse); err != nil {
			return fmt.Errorf("write %s: %w", o.Dir, err)
		}
		if err := idfile.WriteAtomic(filepath.Join(o.Dir, "ssh_config"), sshConfig(b.cfg.Binary, o.Dir, resp), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", o.Dir, err)
		}
		kube, err := b.writeKube(ctx, o.Dir)
		if err != nil {
			return fmt.Errorf("kubeconfig for %s: %w", o.Dir, err)
		}
		b.cfg.Log.Info("bot output written", "dir", o.Dir, "roles", resp.Roles, "logins", resp.Logins, "kube_clusters", kube, "expires", resp.Expires)
	}
	return nil
}

// waitAndRenew sleeps until a third of the identity's lifetime is left
// (less up to a tenth, at random, so many bots started together spread
// out), then renews, retrying errors that may pass until ctx ends or the
// identity expires.
func (b *runner) waitAndRenew(ctx context.Context) error {
	at := RenewAt(b.received, b.leaf.NotAfter, rand.Float64())
	backoff := time.Second
	for {
		t := time.NewTimer(at.Sub(b.cfg.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		err := b.renew(ctx)
		if err == nil {
			return nil
		}
		if !retryable(err) || !b.cfg.Now().Before(b.leaf.NotAfter) {
			return err
		}
		b.cfg.Log.Warn("bot renewal failed; retrying", "err", err, "in", backoff)
		at = b.cfg.Now().Add(backoff)
		backoff = min(2*backoff, 30*time.Second)
	}
}

// RenewAt is when an identity received at received and valid until
// notAfter renews: with a third of its lifetime left, earlier by up to a
// tenth of it (jitter in [0,1)).
func RenewAt(received, notAfter time.Time, jitter float64) time.Time {
	life := notAfter.Sub(received)
	return notAfter.Add(-life / 3).Add(-time.Duration(jitter * float64(life) / 10))
}

// retryable tells errors that may pass (the network) from refusals.
func retryable(err error) bool {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Status >= 500 || ae.Status == 429
	}
	return !errors.Is(err, os.ErrPermission)
}

func newKey() (keyPEM string, priv any, pub string, err error) {
	keyPEM, k, err := idfile.NewPrivateKey()
	if err != nil {
		return "", nil, "", err
	}
	sp, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		return "", nil, "", err
	}
	return keyPEM, k, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))), nil
}

// outputKey is the output's key, made once: certificates change at each
// renewal, the key does not, so ssh never reads a key and a certificate
// that do not belong together.
func outputKey(dir string) ([]byte, ssh.PublicKey, error) {
	path := filepath.Join(dir, client.ProfileKeyFile)
	if data, err := readOwnFile(path); err == nil {
		if signer, err := ssh.ParsePrivateKey(data); err == nil {
			return data, signer.PublicKey(), nil
		}
	}
	keyPEM, k, err := idfile.NewPrivateKey()
	if err != nil {
		return nil, nil, err
	}
	pub, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		return nil, nil, err
	}
	return []byte(keyPEM), pub, nil
}

// readOwnFile reads a regular file of ours, not following a symlink.
func readOwnFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > 1<<20 {
		return nil, fmt.Errorf("%s is not a small regular file", path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("%s belongs to another user", path)
	}
	return io.ReadAll(f)
}

// SecureDir makes dir (0700) or checks it: a real directory (not a
// symlink), owned by this user, tightened to 0700 if it was looser. Files
// in it are written atomically (a new file renamed over the old), so a
// symlink planted in it is replaced, never followed.
func SecureDir(dir string) error {
	if dir == "" {
		return errors.New("empty directory name")
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeSymlink != 0 || !st.IsDir() {
		return fmt.Errorf("%s is not a directory (a symlink?): refusing to write a bot's keys there", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to user id %d, not this one (%d): refusing to write a bot's keys there", dir, sys.Uid, os.Geteuid())
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// sshConfig is the output's ssh_config: every host through the proxy
// (`warden proxy ssh` with this output as its profile), host keys checked
// against the cluster's host CA only.
func sshConfig(binary, dir string, resp *wire.BotCerts) []byte {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
	var b strings.Builder
	fmt.Fprintf(&b, "# Warden bot %s: roles %s, logins %s. Kept by warden bot start (rewritten at\n", resp.Bot,
		strings.Join(resp.Roles, ","), strings.Join(resp.Logins, ","))
	fmt.Fprintf(&b, "# each renewal). Use: ssh -F %s LOGIN@NODE\n", filepath.Join(dir, "ssh_config"))
	b.WriteString("Host *\n")
	fmt.Fprintf(&b, "    ProxyCommand %s --home %s proxy ssh --fdpass %%r@%%h:%%p\n    ProxyUseFdpass yes\n", q(binary), q(dir))
	fmt.Fprintf(&b, "    IdentityFile %s\n    CertificateFile %s\n    IdentitiesOnly yes\n", q(filepath.Join(dir, client.ProfileKeyFile)), q(filepath.Join(dir, client.ProfileCertFile)))
	fmt.Fprintf(&b, "    UserKnownHostsFile %s\n    StrictHostKeyChecking yes\n    GlobalKnownHostsFile /dev/null\n", q(filepath.Join(dir, client.ProfileKnownHostsFile)))
	b.WriteString("    PasswordAuthentication no\n    KbdInteractiveAuthentication no\n    BatchMode yes\n")
	return []byte(b.String())
}
