// Package agentid is what a node agent and a kube agent share about their
// identity (internal/idfile): joining the cluster with a join token, and
// renewing the agent's certificates before they expire.
package agentid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/wire"
)

// JoinRequest is what joining needs; the agent has found the token.
type JoinRequest struct {
	ProxyAddr string
	Token     string
	// CAPin is the expected "sha256:..." fingerprint of the cluster TLS
	// CA; empty joins without checking it.
	CAPin string
	Name  string
	// Kind is the request's wire.JoinRequest.Kind: "" for a node, or
	// wire.TokenTypeKube.
	Kind string
	// Insecure allows joining without CAPin.
	Insecure bool
	// Agent names the agent in errors ("node", "kube agent").
	Agent string
	// Path is where the joined identity is saved.
	Path string
}

// Join asks the proxy for the cluster TLS CA, checks it against the pin
// (required unless Insecure), joins with a new key, and saves the
// identity at Path.
func Join(ctx context.Context, r JoinRequest) (*idfile.File, error) {
	if r.CAPin == "" && !r.Insecure {
		return nil, fmt.Errorf("joining needs --ca-pin sha256:... (printed by warden tokens add) so the %s knows it talks to the right cluster", r.Agent)
	}
	c, err := PinnedClient(ctx, r.ProxyAddr, r.CAPin, "the proxy", "--ca-pin")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	keyPEM, pub, err := NewKey()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = r.Name
	}
	resp, err := c.JoinNode(ctx, wire.JoinRequest{Token: r.Token, Kind: r.Kind, Name: r.Name, Hostname: host,
		PublicKey: pub})
	if err != nil {
		return nil, fmt.Errorf("join cluster: %w", err)
	}
	kind := r.Kind
	if kind == "" {
		kind = wire.TokenTypeNode
	}
	id := &idfile.File{Kind: kind, ProxyAddr: r.ProxyAddr, Cluster: resp.Cluster, NodeID: resp.NodeID, NodeName: r.Name,
		PrivateKey: keyPEM, SSHCert: resp.SSHCert, TLSCert: resp.TLSCert, TLSCA: resp.TLSCA,
		HostCAs: resp.HostCAs, UserCAs: resp.UserCAs}
	if err := id.Write(r.Path); err != nil {
		return nil, fmt.Errorf("save %s identity: %w", r.Agent, err)
	}
	return id, nil
}

// PinnedClient asks addr for the cluster TLS CA, checks its fingerprint
// against pin (no check when pin is empty: the caller decided that is
// allowed), and returns an API client that trusts that CA only. who and
// pinName name the server and the pin in the refusal.
func PinnedClient(ctx context.Context, addr, pin, who, pinName string) (*api.Client, error) {
	probe, err := api.NewClient(api.ClientConfig{Addr: addr, Insecure: true})
	if err != nil {
		return nil, err
	}
	defer probe.Close()
	ping, err := probe.Ping(ctx)
	if err != nil {
		return nil, err
	}
	if pin != "" && !strings.EqualFold(ping.TLSCAFingerprint, pin) {
		return nil, fmt.Errorf("%s at %s presented CA %s, which does not match %s %s: refusing to join", who, addr, ping.TLSCAFingerprint, pinName, pin)
	}
	pool, err := (&idfile.File{TLSCA: ping.TLSCA}).RootCAs()
	if err != nil {
		return nil, err
	}
	return api.NewClient(api.ClientConfig{Addr: addr, RootCAs: pool})
}

// NewKey makes the private key of a joining identity: its PEM, and its
// public key in authorized_keys form for the join request.
func NewKey() (keyPEM, authorizedKey string, err error) {
	keyPEM, priv, err := idfile.NewPrivateKey()
	if err != nil {
		return "", "", err
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return "", "", err
	}
	return keyPEM, string(ssh.MarshalAuthorizedKey(pub)), nil
}

// Renewal renews an agent's certificates.
type Renewal struct {
	// Every is how often to check whether they are due (default 1m).
	Every  time.Duration
	Client *api.Client
	// Path is the identity file the renewed identity is written to.
	Path string
	// Current gives the agent's identity; Set swaps in the renewed one.
	Current func() *idfile.File
	Set     func(*idfile.File) error
	Log     *slog.Logger
	// What names the agent in the log ("node", "kube agent").
	What string
}

// Run renews the certificates in the last third of their life until ctx
// ends.
func (r Renewal) Run(ctx context.Context) {
	every := r.Every
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.renewIfDue(ctx); err != nil && ctx.Err() == nil {
			r.Log.Warn("certificate renewal failed", "err", err)
		}
	}
}

func (r Renewal) renewIfDue(ctx context.Context) error {
	id := r.Current()
	_, cert, err := id.CertSigner()
	if err != nil {
		return err
	}
	start, end := time.Unix(int64(cert.ValidAfter), 0), time.Unix(int64(cert.ValidBefore), 0)
	// Renew in the last third of the lifetime, with jitter (up to a tenth
	// of the lifetime) so a fleet does not renew at the same second.
	life := end.Sub(start)
	due := end.Add(-life / 3).Add(-time.Duration(rand.Int64N(int64(life/10) + 1)))
	if time.Now().Before(due) {
		return nil
	}
	signer, _, err := id.Signer()
	if err != nil {
		return err
	}
	certs, err := r.Client.RenewNodeCerts(ctx, string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if err != nil {
		return err
	}
	next := *id
	next.SSHCert, next.TLSCert, next.TLSCA = certs.SSHCert, certs.TLSCert, certs.TLSCA
	next.HostCAs, next.UserCAs = certs.HostCAs, certs.UserCAs
	if err := next.Write(r.Path); err != nil {
		return err
	}
	r.Log.Info("renewed "+r.What+" certificates", "expires", certs.Expires)
	return r.Set(&next)
}

// LoadOrJoin reads the agent's identity file at path, or, at the first
// start (no file yet), joins with join; loaded says which.
func LoadOrJoin(path string, join func() (*idfile.File, error)) (id *idfile.File, loaded bool, err error) {
	id, err = idfile.Read(path)
	switch {
	case err == nil:
		return id, true, nil
	case errors.Is(err, os.ErrNotExist):
		id, err = join()
		return id, false, err
	default:
		return nil, false, err
	}
}
