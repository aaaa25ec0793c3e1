package service

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/node"
	"github.com/warden-sh/warden/internal/policy"
)

// roleWatcher keeps the current role definitions from auth, pushed over a
// watch stream and re-synced on reconnect.
type roleWatcher struct {
	c      *api.Client
	log    *slog.Logger
	mu     sync.RWMutex
	roles  map[string]*policy.Role
	synced chan struct{}
	once   sync.Once
}

func newRoleWatcher(c *api.Client, log *slog.Logger) *roleWatcher {
	return &roleWatcher{c: c, log: log, synced: make(chan struct{})}
}

func (w *roleWatcher) run(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := w.c.WatchRoles(ctx, w.apply)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 30*time.Second {
			backoff = 250 * time.Millisecond
		}
		w.log.Warn("role watch ended; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (w *roleWatcher) apply(ev api.WatchEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev.Type {
	case "snapshot":
		m := make(map[string]*policy.Role, len(ev.Roles))
		for _, r := range ev.Roles {
			m[r.Metadata.Name] = r
		}
		w.roles = m
		w.once.Do(func() { close(w.synced) })
	case "put":
		if ev.Role != nil && w.roles != nil {
			w.roles[ev.Role.Metadata.Name] = ev.Role
		}
	case "delete":
		delete(w.roles, ev.Name)
	}
}

func (w *roleWatcher) waitSynced(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.synced:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// get resolves names; ok is false until the first snapshot arrived.
func (w *roleWatcher) get(names []string) (roles []*policy.Role, ok bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.roles == nil {
		return nil, false
	}
	for _, n := range names {
		if r, found := w.roles[n]; found {
			roles = append(roles, r)
		}
	}
	return roles, true
}

// authorizer enforces policy.Decide on the node, with the current roles.
type authorizer struct {
	nodeName, nodeID string
	labels           func() map[string]string
	roles            *roleWatcher
}

func (a *authorizer) Authorize(_ context.Context, req node.AuthzRequest) (*node.Permissions, error) {
	id, err := ca.IdentityFromSSHCert(req.Cert)
	if err != nil {
		return nil, &policy.DeniedError{Reason: "your certificate is not a valid Warden certificate", Detail: err.Error()}
	}
	roles, ok := a.roles.get(id.Roles)
	if !ok {
		return nil, &policy.DeniedError{Reason: fmt.Sprintf("node %q has not received its policy from auth yet; try again shortly", a.nodeName)}
	}
	d := policy.Decide(policy.Request{
		Identity: policy.Identity{User: id.Username, Roles: id.Roles, Traits: id.Traits},
		Roles:    roles,
		Target:   policy.Target{Login: req.Login, NodeName: a.nodeName, NodeID: a.nodeID, Labels: a.labels()},
	})
	if !d.Allowed {
		return nil, &policy.DeniedError{Reason: d.Reason, Detail: d.Detail}
	}
	_, certPTY := req.Cert.Permissions.Extensions["permit-pty"]
	_, certPF := req.Cert.Permissions.Extensions["permit-port-forwarding"]
	_, certAgent := req.Cert.Permissions.Extensions["permit-agent-forwarding"]
	expires := time.Time{}
	if req.Cert.ValidBefore != ssh.CertTimeInfinity {
		expires = time.Unix(int64(req.Cert.ValidBefore), 0)
	}
	return &node.Permissions{
		User:           id.Username,
		Roles:          id.Roles,
		PTY:            d.Options.PermitPTY && certPTY,
		PortForwarding: d.Options.PortForwarding && certPF,
		ForwardAgent:   d.Options.ForwardAgent && certAgent,
		FileTransfer:   d.Options.FileTransfer,
		Expires:        expires,
	}, nil
}
