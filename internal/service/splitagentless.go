package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
)

// Agentless servers through a proxy running apart (docs/agentless.md):
// the proxy's AgentlessDirectory (proxy/agentless.go) asks auth through
// its API (auth/proxyagentless.go) for what the proxy in auth's process
// gets from auth's methods: the decision for a login, the one-minute
// certificate for sshd (decided again at auth), the host certificate it
// presents in the server's name, and the server's channels for session
// events and recordings. Locks end live sessions from the watched lock
// set (proxy.ReverifyLocks), role changes by a new decision at auth.

// agentlessListFresh is how long the proxy reuses auth's list of
// agentless servers to route users (each login is decided at auth
// against the server's current registration all the same).
const agentlessListFresh = time.Second

// splitAgentlessCallTimeout bounds a call without a context of its own.
const splitAgentlessCallTimeout = 10 * time.Second

type agentlessList struct {
	mu    sync.Mutex
	at    time.Time
	nodes []auth.Node
}

// agentlessNodes are the agentless servers registered at auth (with a
// short cache); none when auth cannot be reached.
func (s *splitProxy) agentlessNodes(ctx context.Context) []auth.Node {
	l := &s.agentless
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.at.IsZero() && time.Since(l.at) < agentlessListFresh {
		return l.nodes
	}
	var nodes []auth.Node
	err := s.call(ctx, func(c *api.Client) error {
		var err error
		nodes, err = c.ProxyListAgentless(ctx)
		return err
	})
	if err != nil {
		s.log.Warn("list agentless servers", "err", err)
		return nil
	}
	for i := range nodes {
		nodes[i].Agentless = true // auth lists nothing else here
	}
	l.at, l.nodes = time.Now(), nodes
	return nodes
}

func (s *splitProxy) AuthorizeAgentless(ctx context.Context, _ auth.Caller, user auth.Caller, n auth.Node, login, remote string) (*auth.AgentlessDecision, error) {
	var d *auth.AgentlessDecision
	err := s.call(ctx, func(c *api.Client) error {
		var err error
		d, err = c.ProxyAuthorizeAgentless(ctx, api.ProxyAgentlessRequest{User: user, Node: n, Login: login, Remote: remote})
		return err
	})
	if err != nil {
		return nil, err
	}
	// Auth answers for the user asked about, and no other.
	if d.Caller.Kind != auth.KindUser || d.Caller.User != user.User {
		return nil, fmt.Errorf("%w: auth answered for another caller", auth.ErrAccessDenied)
	}
	return d, nil
}

// IssueAgentlessCert asks auth for the certificate; auth decides the
// login again and puts in the options it decided (opts is not sent).
func (s *splitProxy) IssueAgentlessCert(ctx context.Context, _ auth.Caller, user auth.Caller, n auth.Node, login string, pub ssh.PublicKey,
	_ policy.EffectiveOptions, source string) (*ssh.Certificate, error) {
	var cert *ssh.Certificate
	err := s.call(ctx, func(c *api.Client) error {
		var err error
		cert, err = c.ProxyIssueAgentlessCert(ctx, api.ProxyAgentlessRequest{User: user, Node: n, Login: login, Source: source}, pub)
		return err
	})
	if err != nil {
		return nil, err
	}
	if cert.CertType != ssh.UserCert || cert.KeyId != user.User || !bytesEqualKey(cert.Key, pub) {
		return nil, errors.New("auth answered a certificate for another user or key")
	}
	return cert, nil
}

// IssueProxyHostCert asks auth for the host certificate presented in an
// agentless server's name: principals are its name and id (as
// proxy/agentless.go asks); auth checks it is registered so.
func (s *splitProxy) IssueProxyHostCert(pub ssh.PublicKey, principals []string, _ time.Duration) (*ssh.Certificate, error) {
	if len(principals) != 2 {
		return nil, fmt.Errorf("a host certificate for an agentless server names it and its id, not %v", principals)
	}
	ctx, cancel := context.WithTimeout(context.Background(), splitAgentlessCallTimeout)
	defer cancel()
	var cert *ssh.Certificate
	err := s.call(ctx, func(c *api.Client) error {
		var err error
		cert, err = c.ProxyAgentlessHostCert(ctx, principals[0], principals[1], pub)
		return err
	})
	if err != nil {
		return nil, err
	}
	if cert.CertType != ssh.HostCert || !bytesEqualKey(cert.Key, pub) {
		return nil, errors.New("auth answered a certificate that is not a host certificate for the key")
	}
	return cert, nil
}

// EmitEvents sends an agentless server's session events (c is the
// server's node identity, which the proxy speaks as).
func (s *splitProxy) EmitEvents(ctx context.Context, c auth.Caller, events []audit.Event) error {
	if c.Kind != auth.KindNode || c.NodeID == "" {
		return fmt.Errorf("%w: the proxy sends events only for agentless servers and kube agents here", auth.ErrAccessDenied)
	}
	return s.call(ctx, func(cl *api.Client) error { return cl.AgentlessEmitEvents(ctx, c.NodeID, events) })
}

func (s *splitProxy) AppendRecording(ctx context.Context, c auth.Caller, meta recording.Meta, offset int64, data []byte) (int64, error) {
	if c.Kind != auth.KindNode || c.NodeID == "" {
		return 0, fmt.Errorf("%w: the proxy records only agentless servers' and kube agents' sessions", auth.ErrAccessDenied)
	}
	var n int64
	err := s.call(ctx, func(cl *api.Client) error {
		var err error
		n, err = cl.AgentlessAppendRecording(ctx, c.NodeID, meta, offset, data)
		return err
	})
	return n, err
}

func (s *splitProxy) CompleteRecording(ctx context.Context, c auth.Caller, sessionID string, length int64, sha string, interrupted bool) error {
	if c.Kind != auth.KindNode || c.NodeID == "" {
		return fmt.Errorf("%w: the proxy records only agentless servers' and kube agents' sessions", auth.ErrAccessDenied)
	}
	return s.call(ctx, func(cl *api.Client) error {
		return cl.AgentlessCompleteRecording(ctx, c.NodeID, sessionID, length, sha, interrupted)
	})
}

func bytesEqualKey(a, b ssh.PublicKey) bool {
	return a != nil && b != nil && string(a.Marshal()) == string(b.Marshal())
}
