package service

import (
	"context"
	"errors"
	"sort"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/policy"
)

// Kube exec and attach sessions through a proxy running apart are tapped,
// audited and recorded as in auth's process (proxy/kuberec.go): the
// session options come from the roles this proxy follows over auth's
// watch (ListRoles), and the proxy speaks as the kube agent for the
// session's events and recording (EmitEvents, AppendRecording and
// CompleteRecording in splitagentless.go, which auth allows for a
// registered kube agent as for an agentless server).

// ListRoles is every role in this proxy's current view of them, for the
// session options of a kube session; until the first view arrives there
// is none to decide with, and the session is refused.
func (s *splitProxy) ListRoles(_ context.Context, _ auth.Caller) ([]*policy.Role, error) {
	if !s.synced.Load() {
		return nil, errors.New("the proxy has no view of the roles yet")
	}
	s.mu.RLock()
	out := make([]*policy.Role, 0, len(s.roles))
	for _, r := range s.roles {
		out = append(out, r)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Metadata.Name < out[j].Metadata.Name })
	return out, nil
}
