package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/storage"
)

// Agentless servers through a proxy running apart from auth
// (docs/agentless.md): what the proxy in auth's process does with auth's
// methods directly, a proxy running apart asks for through auth's API,
// with its proxy identity. Each call is for proxies only, checks the
// current state here (the server's registration, the user's state, roles
// and locks) and hands out no more than the in-process proxy gets: the
// one-minute certificate for one login of the user the proxy verified,
// decided here; a host certificate naming one registered agentless
// server; and the server's own channels for its session events and
// recordings.

// ProxyListAgentless lists the agentless servers, for a proxy to route
// users to (it filters by the user's roles; auth decides each login
// again).
func (s *Server) ProxyListAgentless(ctx context.Context, c Caller) ([]Node, error) {
	if err := s.authorize(c, "ProxyListAgentless"); err != nil {
		return nil, err
	}
	return s.agentlessNodes(ctx), nil
}

// ProxyAuthorizeAgentless is AuthorizeAgentless for the user whose
// certificate a proxy verified.
func (s *Server) ProxyAuthorizeAgentless(ctx context.Context, c Caller, user Caller, node Node, login, remote string) (*AgentlessDecision, error) {
	if err := s.authorize(c, "ProxyAuthorizeAgentless"); err != nil {
		return nil, err
	}
	if user.Kind != KindUser {
		return nil, badRequest("a proxy speaks for users only, not %q", user.Kind)
	}
	return s.AuthorizeAgentless(ctx, c, user, node, login, remote)
}

// ProxyIssueAgentlessCert decides the login again (the user's current
// state, roles and locks, the server's current registration), then issues
// the one-minute certificate for it with the options decided here: what
// the proxy says of the options is not asked.
func (s *Server) ProxyIssueAgentlessCert(ctx context.Context, c Caller, user Caller, node Node, login, remote string,
	pub ssh.PublicKey, source string) (*ssh.Certificate, error) {
	if err := s.authorize(c, "ProxyIssueAgentlessCert"); err != nil {
		return nil, err
	}
	if user.Kind != KindUser {
		return nil, badRequest("a proxy speaks for users only, not %q", user.Kind)
	}
	if pub == nil {
		return nil, badRequest("a public key is needed")
	}
	d, err := s.AuthorizeAgentless(ctx, c, user, node, login, remote)
	if err != nil {
		return nil, err
	}
	return s.IssueAgentlessCert(ctx, c, d.Caller, node, login, pub, d.Options, source)
}

// ProxyAgentlessHostCert issues the host certificate a proxy presents in
// a registered agentless server's name (its name and id, as for the
// proxy in auth's process), for AgentlessProxyHostCertTTL.
func (s *Server) ProxyAgentlessHostCert(ctx context.Context, c Caller, name, id string, pub ssh.PublicKey) (*ssh.Certificate, error) {
	if err := s.authorize(c, "ProxyAgentlessHostCert"); err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, badRequest("a public key is needed")
	}
	if _, err := s.currentAgentless(ctx, name, id); err != nil {
		return nil, err
	}
	return s.ca.IssueHost(ca.HostCertRequest{PublicKey: pub, HostID: "proxy", Principals: uniq([]string{name, id}), TTL: AgentlessProxyHostCertTTL})
}

// AgentlessProxyHostCertTTL is how long the host certificate a proxy
// running apart presents in an agentless server's name lives.
const AgentlessProxyHostCertTTL = time.Hour

// ProxyAgentlessCaller is the caller a proxy speaks as for a server it
// fronts, for that server's session events and recordings (as the proxy
// in auth's process does): an agentless server (the proxy holds its
// sessions) or a kube agent (the proxy records the exec and attach
// sessions it relays to it), once found registered as such. Never a node
// with an agent of its own: that node speaks for itself.
func (s *Server) ProxyAgentlessCaller(ctx context.Context, c Caller, id string) (Caller, error) {
	if err := s.authorize(c, "ProxyAgentlessCaller"); err != nil {
		return Caller{}, err
	}
	reg, err := s.GetNodeRegistration(ctx, id)
	if err != nil {
		return Caller{}, err
	}
	if reg.Kind != RegistrationKube {
		if _, err := s.currentAgentless(ctx, reg.Name, id); err != nil {
			return Caller{}, err
		}
	}
	return Caller{Kind: KindNode, NodeID: id}, nil
}

// currentAgentless is the agentless server registered as name, if its id
// is id.
func (s *Server) currentAgentless(ctx context.Context, name, id string) (*agentlessRecord, error) {
	if name == "" || id == "" {
		return nil, badRequest("an agentless server's name and id are needed")
	}
	if err := validateNodeName("agentless server name", name); err != nil {
		return nil, err
	}
	var rec agentlessRecord
	switch err := s.getJSON(ctx, prefixAgentless+name, &rec); {
	case errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("%q is not a registered agentless server: %w", name, storage.ErrNotFound)
	case err != nil:
		return nil, err
	case rec.ID != id:
		return nil, fmt.Errorf("agentless server %q was registered again: %w", name, storage.ErrNotFound)
	}
	return &rec, nil
}
