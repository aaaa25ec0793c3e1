package auth

import (
	"context"
	"fmt"

	"github.com/warden-sh/warden/internal/policy"
)

// Caller kinds.
const (
	KindUser  = "user"
	KindNode  = "node"
	KindAdmin = "admin"
	// KindProxy is the proxy in auth's process; it has no certificate.
	KindProxy = "proxy"
)

// Caller is the authenticated identity making a request, taken from its
// verified client certificate.
type Caller struct {
	Kind   string
	User   string
	NodeID string
	Roles  []string
	Traits map[string][]string
}

// AdminCaller is the built-in local administrator (the identity written to
// the data directory of the auth service).
func AdminCaller() Caller { return Caller{Kind: KindAdmin, User: "admin", Roles: []string{"admin"}} }

// ProxyCaller is the proxy running in auth's process (for its audit events).
func ProxyCaller() Caller { return Caller{Kind: KindProxy, User: "proxy"} }

// Name returns a human label for audit events.
func (c Caller) Name() string {
	if c.Kind == KindNode {
		return "node:" + c.NodeID
	}
	return c.User
}

// authorize is the one check at the top of every administrative method.
func (s *Server) authorize(ctx context.Context, c Caller, resource, verb string) error {
	switch c.Kind {
	case KindAdmin:
		return nil
	case KindUser:
		if err := policy.CheckResource(s.roles.get(c.Roles), resource, verb); err != nil {
			return fmt.Errorf("%w: %s %s: %v", ErrAccessDenied, verb, resource, err)
		}
		return nil
	default:
		return denied("%s cannot %s %s", c.Kind, verb, resource)
	}
}
