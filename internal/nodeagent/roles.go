package nodeagent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/node"
	"github.com/warden-sh/warden/internal/policy"
)

// roleWatcher keeps the current role definitions and locks from auth,
// pushed over one watch stream and re-synced on reconnect. It also knows how
// fresh its view is, for lock_mode strict.
type roleWatcher struct {
	c      *api.Client
	log    *slog.Logger
	mu     sync.RWMutex
	roles  map[string]*policy.Role
	locks  *lock.Set
	synced chan struct{}
	once   sync.Once
	// fresh is the unix-nano time the stream last proved alive.
	fresh atomic.Int64
	// connected is true while a watch stream is open; lostAt is when the
	// last one ended.
	connected atomic.Bool
	lostAt    atomic.Int64
	// onChange is called after every lock or role change (to re-evaluate
	// live sessions).
	onChange func(kind string)
}

func newRoleWatcher(c *api.Client, log *slog.Logger) *roleWatcher {
	return &roleWatcher{c: c, log: log, synced: make(chan struct{}), locks: lock.NewSet()}
}

// staleness is how long the view of auth has been unconfirmed: zero while
// the stream is up and its keepalives arrive, else the time since it was
// last known good.
func (w *roleWatcher) staleness() time.Duration {
	f := w.fresh.Load()
	if f == 0 {
		return time.Duration(1<<62 - 1)
	}
	since := time.Since(time.Unix(0, f))
	if w.connected.Load() && since <= 2*api.WatchKeepalive+5*time.Second {
		return 0
	}
	if d := w.lostAt.Load(); d != 0 && !w.connected.Load() {
		return time.Since(time.Unix(0, d))
	}
	return since
}

func (w *roleWatcher) run(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := w.c.Watch(ctx, func(ev api.WatchEvent) {
			w.connected.Store(true)
			w.apply(ev)
		})
		if w.connected.Swap(false) {
			w.lostAt.Store(time.Now().UnixNano())
		}
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
	w.fresh.Store(time.Now().UnixNano())
	changed := ""
	w.mu.Lock()
	switch {
	case ev.Type == "snapshot":
		m := make(map[string]*policy.Role, len(ev.Roles))
		for _, r := range ev.Roles {
			m[r.Metadata.Name] = r
		}
		w.roles = m
		w.locks.Replace(ev.Locks)
		w.once.Do(func() { close(w.synced) })
		changed = "snapshot"
	case ev.Kind == "role" && ev.Type == "put":
		if ev.Role != nil && w.roles != nil {
			w.roles[ev.Role.Metadata.Name] = ev.Role
			changed = "role"
		}
	case ev.Kind == "role" && ev.Type == "delete":
		delete(w.roles, ev.Name)
		changed = "role"
	case ev.Kind == "lock" && ev.Type == "put":
		if ev.Lock != nil {
			w.locks.Put(ev.Lock)
			changed = "lock"
		}
	case ev.Kind == "lock" && ev.Type == "delete":
		w.locks.Delete(ev.Name)
		changed = "lock"
	}
	w.mu.Unlock()
	if changed != "" && w.onChange != nil {
		w.onChange(changed)
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

// DefaultLockStaleness is how long a node in lock_mode strict trusts its
// last view of the locks when it cannot reach auth.
const DefaultLockStaleness = 60 * time.Second

// authorizer enforces policy.Decide and the locks on the node, with the
// current roles.
type authorizer struct {
	nodeName, nodeID string
	labels           func() map[string]string
	roles            *roleWatcher
	// maxStale bounds the staleness of the lock view in lock_mode strict.
	maxStale time.Duration
}

// decide is the one policy decision for a login on this node.
func (a *authorizer) decide(id *ca.CertIdentity, roles []*policy.Role, login string) policy.Decision {
	return policy.Decide(policy.Request{
		Identity: policy.Identity{User: id.Username, Roles: id.Roles, Traits: id.Traits},
		Roles:    roles,
		Target:   policy.Target{Login: login, NodeName: a.nodeName, NodeID: a.nodeID, Labels: a.labels()},
	})
}

// canJoin is the node's JoinPolicy: the joiner's current roles must allow
// joining the owner's sessions in that mode.
func (a *authorizer) canJoin(joiner node.Permissions, owner string, ownerRoles []string, mode string) error {
	roles, ok := a.roles.get(joiner.Roles)
	if !ok {
		return &policy.DeniedError{Reason: fmt.Sprintf("node %q has not received its policy from auth yet; try again shortly", a.nodeName)}
	}
	if !policy.CanJoin(roles, ownerRoles, mode) {
		return &policy.DeniedError{Reason: fmt.Sprintf("your roles do not allow joining %s's sessions as %s", owner, mode)}
	}
	return nil
}

// connIdentity is a live connection's identity, as Authorize decoded it.
func connIdentity(ci node.ConnInfo) (*ca.CertIdentity, error) {
	if id, ok := ci.Identity.(*ca.CertIdentity); ok && id != nil {
		return id, nil
	}
	return ca.IdentityFromSSHCert(ci.Cert)
}

// subject describes a session for lock checks: with its certificate's
// issue time (a removed or reset user's certificates are locked by it) and
// MFA device.
func (a *authorizer) subject(id *ca.CertIdentity, login string) lock.Subject {
	sub := lock.Subject{User: id.Username, Roles: id.Roles, Login: login, Node: a.nodeName, NodeID: a.nodeID,
		Requests: id.RequestIDs, Issued: id.Issued}
	if id.MFADevice != "" {
		sub.MFADevices = []string{id.MFADevice}
	}
	return sub
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
	if req.Join {
		// A join-only connection: which sessions it may join is decided per
		// join (JoinPolicy); locks apply as to any connection.
		if l := a.roles.locks.Check(a.subject(id, ""), time.Now()); l != nil {
			return nil, &policy.DeniedError{Reason: l.UserMessage(), Detail: "lock " + l.ID}
		}
		return &node.Permissions{User: id.Username, Roles: id.Roles, JoinOnly: true, Identity: id}, nil
	}
	d := a.decide(id, roles, req.Login)
	if !d.Allowed {
		return nil, &policy.DeniedError{Reason: d.Reason, Detail: d.Detail}
	}
	if l := a.roles.locks.Check(a.subject(id, req.Login), time.Now()); l != nil {
		return nil, &policy.DeniedError{Reason: l.UserMessage(), Detail: "lock " + l.ID}
	}
	if d.Options.LockMode == policy.LockStrict && a.roles.staleness() > a.maxStale {
		return nil, &policy.DeniedError{Reason: "this node cannot reach auth to check locks, and your roles require it (lock_mode strict); try again later",
			Detail: fmt.Sprintf("lock view stale for %s", a.roles.staleness().Round(time.Second))}
	}
	_, certPTY := req.Cert.Permissions.Extensions["permit-pty"]
	_, certPF := req.Cert.Permissions.Extensions["permit-port-forwarding"]
	_, certAgent := req.Cert.Permissions.Extensions["permit-agent-forwarding"]
	return &node.Permissions{
		User:                id.Username,
		Roles:               id.Roles,
		PTY:                 d.Options.PermitPTY && certPTY,
		PortForwarding:      d.Options.PortForwarding && certPF,
		ForwardAgent:        d.Options.ForwardAgent && certAgent,
		FileTransfer:        d.Options.FileTransfer,
		RecordMode:          d.Options.RecordSession,
		RecordInput:         d.Options.RecordInput,
		KeepAfterCertExpiry: !d.Options.DisconnectExpiredCert,
		IdleTimeout:         d.Options.ClientIdleTimeout,
		Identity:            id,
	}, nil
}
