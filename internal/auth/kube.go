package auth

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/wire"
)

// KubeCluster is wire.KubeCluster: the API carries it.
type KubeCluster = wire.KubeCluster

// joinTokenTypes are the kinds of join token CreateToken makes.
var joinTokenTypes = []string{wire.TokenTypeNode, wire.TokenTypeKube, wire.TokenTypeProxy}

func joinTokenType(t string) bool { return slices.Contains(joinTokenTypes, t) }

// joinKind is the token type a JoinRequest's kind needs ("" is a node).
func joinKind(kind string) (string, error) {
	switch kind {
	case "", wire.TokenTypeNode:
		return wire.TokenTypeNode, nil
	case wire.TokenTypeKube:
		return wire.TokenTypeKube, nil
	}
	return "", badRequest("unknown join kind %q (node or kube)", kind)
}

// registrationKind is NodeRegistration.Kind for a token type (empty for
// nodes, as registrations made before kube agents existed).
func registrationKind(tokenType string) string {
	if tokenType == wire.TokenTypeNode {
		return ""
	}
	return tokenType
}

// RegistrationKube is NodeRegistration.Kind of a kube agent.
const RegistrationKube = wire.TokenTypeKube

// KubeInventory is the live set of Kubernetes clusters (the proxies'
// kube agent tunnels).
type KubeInventory interface {
	KubeClusters() []KubeCluster
}

// SetKubeInventory connects the cluster inventory (the proxy's registry).
func (s *Server) SetKubeInventory(inv KubeInventory) { s.kubeInventory.Store(&inv) }

func (s *Server) liveKubeClusters() []KubeCluster {
	p := s.kubeInventory.Load()
	if p == nil {
		return nil
	}
	return (*p).KubeClusters()
}

// ListKubeClusters lists the live Kubernetes clusters: all of them for
// the admin, those the current roles' kubernetes_labels allow for a user.
func (s *Server) ListKubeClusters(ctx context.Context, c Caller) ([]KubeCluster, error) {
	all, err := s.authorizeShare(c, "ListKubeClusters")
	if err != nil {
		return nil, err
	}
	var roles []*policy.Role
	if !all {
		roles = s.roles.get(c.Roles)
	}
	var out []KubeCluster
	for _, k := range s.liveKubeClusters() {
		if all || policy.KubeClusterAllowed(roles, c.Traits, policy.KubeCluster{Name: k.Name, Labels: k.Labels}) {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AuthorizeKube decides one Kubernetes API request of c (as CurrentCaller
// returns it: current roles and traits) on cluster: policy.DecideKube
// against the current role definitions. A refusal is a *policy.DeniedError
// with the reason for the user (the decision's detail is for the audit).
func (s *Server) AuthorizeKube(ctx context.Context, c Caller, cluster KubeCluster, res policy.KubeResource) (policy.KubeDecision, error) {
	if err := s.authorize(c, "AuthorizeKube"); err != nil {
		return policy.KubeDecision{}, err
	}
	d := policy.DecideKube(policy.KubeRequest{
		Identity: policy.Identity{User: c.User, Roles: c.Roles, Traits: c.Traits},
		Roles:    s.roles.get(c.Roles),
		Cluster:  policy.KubeCluster{Name: cluster.Name, Labels: cluster.Labels},
		Resource: res,
	})
	if !d.Allowed {
		if roles := s.suggestKube(ctx, c, cluster, res); len(roles) > 0 {
			return d, fmt.Errorf("%w: %w; you may request access: warden request create --roles %s --reason \"...\"",
				ErrAccessDenied, d.Err(), strings.Join(roles, ","))
		}
		return d, fmt.Errorf("%w: %w", ErrAccessDenied, d.Err())
	}
	return d, nil
}

// suggestKube names the roles c may request that would allow the request
// (for the refusal's message), as SuggestRoles does for SSH.
func (s *Server) suggestKube(ctx context.Context, c Caller, cluster KubeCluster, res policy.KubeResource) []string {
	held := s.roles.get(c.Roles)
	all, err := listJSON[*policy.Role](ctx, s.b, prefixRoles)
	if err != nil {
		return nil
	}
	var out []string
	for _, cand := range all {
		if cand == nil || slices.Contains(c.Roles, cand.Metadata.Name) || !access.Requestable(held, cand.Metadata.Name) {
			continue
		}
		d := policy.DecideKube(policy.KubeRequest{Identity: policy.Identity{User: c.User, Traits: c.Traits},
			Roles: append(slices.Clone(held), cand), Cluster: policy.KubeCluster{Name: cluster.Name, Labels: cluster.Labels}, Resource: res})
		if d.Allowed {
			out = append(out, cand.Metadata.Name)
		}
	}
	sort.Strings(out)
	return out
}
