package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
)

// DefaultLockStaleness is how long a node in lock_mode strict trusts its
// last view of the locks when it cannot reach auth.
const DefaultLockStaleness = 60 * time.Second

// AccessConfig configures an Access.
type AccessConfig struct {
	NodeName, NodeID string
	// Labels returns the node's current labels (static and dynamic).
	Labels func() map[string]string
	// MaxStale bounds the staleness of the lock view in lock_mode strict
	// (default DefaultLockStaleness).
	MaxStale time.Duration
	// FeedInterval is how often a live feed confirms itself when nothing
	// changes (its keepalive): the view counts as current while
	// confirmations arrive within twice that plus 5s.
	FeedInterval time.Duration
}

// Access is the node's access decision: policy.Decide and the locks,
// against the cluster's current roles and locks. The node agent's watch of
// auth feeds it (Replace, PutRole, PutLock, ..., Confirm, Lost); the server
// asks it at every connection (Authorize), every join (CanJoin), and when
// the roles or locks change or the view grows stale (Revoked,
// StrictUnverified).
type Access struct {
	cfg   AccessConfig
	mu    sync.RWMutex
	roles map[string]*policy.Role
	locks *lock.Set
	// fresh is the unix-nano time the feed last proved alive.
	fresh atomic.Int64
	// connected is true while the feed is up; lostAt is when it last went
	// down.
	connected atomic.Bool
	lostAt    atomic.Int64
	// uses counts the sessions opened with each per-session MFA
	// certificate (sessionmfa.go).
	uses sessionUses
	// clusterSessionMFA is the cluster's auth.require_session_mfa.
	clusterSessionMFA atomic.Bool
}

// NewAccess returns an Access that refuses every connection until its
// first Replace.
func NewAccess(cfg AccessConfig) *Access {
	if cfg.MaxStale <= 0 {
		cfg.MaxStale = DefaultLockStaleness
	}
	if cfg.Labels == nil {
		cfg.Labels = func() map[string]string { return nil }
	}
	return &Access{cfg: cfg, locks: lock.NewSet()}
}

// Replace sets all roles and locks (a snapshot from auth).
func (a *Access) Replace(roles []*policy.Role, locks []*lock.Lock) {
	m := make(map[string]*policy.Role, len(roles))
	for _, r := range roles {
		m[r.Metadata.Name] = r
	}
	a.mu.Lock()
	a.roles = m
	a.locks.Replace(locks)
	a.mu.Unlock()
}

// PutRole adds or replaces a role; it reports false (and keeps nothing)
// before the first Replace.
func (a *Access) PutRole(r *policy.Role) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.roles == nil {
		return false
	}
	a.roles[r.Metadata.Name] = r
	return true
}

// DeleteRole removes a role.
func (a *Access) DeleteRole(name string) {
	a.mu.Lock()
	delete(a.roles, name)
	a.mu.Unlock()
}

// PutLock adds or replaces a lock.
func (a *Access) PutLock(l *lock.Lock) { a.locks.Put(l) }

// DeleteLock removes a lock.
func (a *Access) DeleteLock(id string) { a.locks.Delete(id) }

// Confirm records that the feed is up and current now.
func (a *Access) Confirm() {
	a.connected.Store(true)
	a.fresh.Store(time.Now().UnixNano())
}

// Lost records that the feed went down.
func (a *Access) Lost() {
	if a.connected.Swap(false) {
		a.lostAt.Store(time.Now().UnixNano())
	}
}

// Staleness is how long the view of auth has been unconfirmed: zero while
// the feed is up and its confirmations arrive, else the time since it was
// last known good.
func (a *Access) Staleness() time.Duration {
	f := a.fresh.Load()
	if f == 0 {
		return time.Duration(1<<62 - 1)
	}
	since := time.Since(time.Unix(0, f))
	if a.connected.Load() && since <= 2*a.cfg.FeedInterval+5*time.Second {
		return 0
	}
	if d := a.lostAt.Load(); d != 0 && !a.connected.Load() {
		return time.Since(time.Unix(0, d))
	}
	return since
}

// MaxStale is the staleness beyond which lock_mode strict refuses and ends
// sessions.
func (a *Access) MaxStale() time.Duration { return a.cfg.MaxStale }

// rolesOf resolves names; ok is false until the first Replace.
func (a *Access) rolesOf(names []string) (roles []*policy.Role, ok bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.roles == nil {
		return nil, false
	}
	for _, n := range names {
		if r, found := a.roles[n]; found {
			roles = append(roles, r)
		}
	}
	return roles, true
}

// decide is the one policy decision for a login on this node.
func (a *Access) decide(id *ca.CertIdentity, roles []*policy.Role, login string) policy.Decision {
	return policy.Decide(policy.Request{
		Identity: policy.Identity{User: id.Username, Roles: id.Roles, Traits: id.Traits},
		Roles:    roles,
		Target:   policy.Target{Login: login, NodeName: a.cfg.NodeName, NodeID: a.cfg.NodeID, Labels: a.cfg.Labels()},
	})
}

// CanJoin is the node's JoinPolicy: the joiner's current roles must allow
// joining the owner's sessions in that mode.
func (a *Access) CanJoin(joiner Permissions, owner string, ownerRoles []string, mode string) error {
	roles, ok := a.rolesOf(joiner.Roles)
	if !ok {
		return &policy.DeniedError{Reason: fmt.Sprintf("node %q has not received its policy from auth yet; try again shortly", a.cfg.NodeName)}
	}
	if !policy.CanJoin(roles, ownerRoles, mode) {
		return &policy.DeniedError{Reason: fmt.Sprintf("your roles do not allow joining %s's sessions as %s", owner, mode)}
	}
	return nil
}

// connIdentity is a live connection's identity, as Authorize decoded it.
func connIdentity(ci ConnInfo) (*ca.CertIdentity, error) {
	if id, ok := ci.Identity.(*ca.CertIdentity); ok && id != nil {
		return id, nil
	}
	return ca.IdentityFromSSHCert(ci.Cert)
}

// subject describes a session for lock checks: with its certificate's
// issue time (a removed or reset user's certificates are locked by it) and
// MFA device.
func (a *Access) subject(id *ca.CertIdentity, login string) lock.Subject {
	sub := lock.Subject{User: id.Username, Roles: id.Roles, Login: login, Node: a.cfg.NodeName, NodeID: a.cfg.NodeID,
		Requests: id.RequestIDs, Issued: id.Issued}
	if id.MFADevice != "" {
		sub.MFADevices = []string{id.MFADevice}
	}
	return sub
}

// Authorize is the Authorizer: policy.Decide with the current roles, the
// locks, and lock_mode strict's bound on the staleness of the lock view.
func (a *Access) Authorize(_ context.Context, req AuthzRequest) (*Permissions, error) {
	id, err := ca.IdentityFromSSHCert(req.Cert)
	if err != nil {
		return nil, &policy.DeniedError{Reason: "your certificate is not a valid Warden certificate", Detail: err.Error()}
	}
	roles, ok := a.rolesOf(id.Roles)
	if !ok {
		return nil, &policy.DeniedError{Reason: fmt.Sprintf("node %q has not received its policy from auth yet; try again shortly", a.cfg.NodeName)}
	}
	if req.Join {
		// A join-only connection: which sessions it may join is decided per
		// join (JoinPolicy); locks apply as to any connection.
		if l := a.locks.Check(a.subject(id, ""), time.Now()); l != nil {
			return nil, &policy.DeniedError{Reason: l.UserMessage(), Detail: "lock " + l.ID}
		}
		return &Permissions{User: id.Username, Roles: id.Roles, JoinOnly: true, Identity: id}, nil
	}
	d := a.decide(id, roles, req.Login)
	if !d.Allowed {
		return nil, &policy.DeniedError{Reason: d.Reason, Detail: d.Detail}
	}
	if l := a.locks.Check(a.subject(id, req.Login), time.Now()); l != nil {
		return nil, &policy.DeniedError{Reason: l.UserMessage(), Detail: "lock " + l.ID}
	}
	if d.Options.LockMode == policy.LockStrict && a.Staleness() > a.cfg.MaxStale {
		return nil, &policy.DeniedError{Reason: "this node cannot reach auth to check locks, and your roles require it (lock_mode strict); try again later",
			Detail: fmt.Sprintf("lock view stale for %s", a.Staleness().Round(time.Second))}
	}
	expires, err := a.checkSessionMFA(id, roles, req)
	if err != nil {
		return nil, err
	}
	_, certPTY := req.Cert.Permissions.Extensions["permit-pty"]
	_, certPF := req.Cert.Permissions.Extensions["permit-port-forwarding"]
	_, certAgent := req.Cert.Permissions.Extensions["permit-agent-forwarding"]
	return &Permissions{
		User:                id.Username,
		Roles:               id.Roles,
		PTY:                 d.Options.PermitPTY && certPTY,
		PortForwarding:      d.Options.PortForwarding && certPF,
		ForwardAgent:        d.Options.ForwardAgent && certAgent,
		FileTransfer:        d.Options.FileTransfer,
		RecordMode:          d.Options.RecordSession,
		RecordInput:         d.Options.RecordInput,
		KeepAfterCertExpiry: !d.Options.DisconnectExpiredCert || !expires.IsZero(),
		Expires:             expires,
		IdleTimeout:         d.Options.ClientIdleTimeout,
		Identity:            id,
	}, nil
}

// Revoked re-checks a live connection after a lock or role change
// (authorization continues for the whole session, not just at its start):
// a reason and the user's message when it may no longer continue, empty
// strings otherwise. It is the match of Server.Terminate.
func (a *Access) Revoked(ci ConnInfo) (reason, message string) {
	id, err := connIdentity(ci)
	if err != nil {
		return "", ""
	}
	login := ci.Login
	if ci.JoinOnly {
		login = ""
	}
	sub := a.subject(id, login)
	sub.Sessions = ci.SessionIDs // a lock on one session ends it
	if l := a.locks.Check(sub, time.Now()); l != nil {
		return "locked", l.UserMessage()
	}
	if ci.JoinOnly {
		return "", "" // joins are checked when made; locks end them
	}
	roles, ok := a.rolesOf(id.Roles)
	if !ok {
		return "", ""
	}
	d := a.decide(id, roles, ci.Login)
	if !d.Allowed {
		return "access changed", "your access changed and no longer allows this session: " + d.Reason
	}
	return "", ""
}

// StrictUnverified is the match of Server.Disconnect once the lock view is
// stale beyond MaxStale: it picks the connections whose roles demand
// lock_mode strict. Not a revocation: access could not be verified.
func (a *Access) StrictUnverified(stale time.Duration) func(ConnInfo) (reason, message string) {
	return func(ci ConnInfo) (string, string) {
		id, err := connIdentity(ci)
		if err != nil {
			return "", ""
		}
		roles, _ := a.rolesOf(id.Roles)
		if policy.MergeOptions(roles).LockMode != policy.LockStrict {
			return "", ""
		}
		return "lock view stale", fmt.Sprintf("this node lost contact with auth %s ago and your roles require current lock checks (lock_mode strict)", stale.Round(time.Second))
	}
}
