package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
)

// Caller kinds.
const (
	KindUser  = "user"
	KindNode  = "node"
	KindAdmin = "admin"
	// KindProxy is a proxy: the one in auth's process (no certificate),
	// or one running apart with a proxy identity (proxies.go).
	KindProxy = "proxy"
)

// Caller is the authenticated identity making a request, taken from its
// verified client certificate. For users, CurrentCaller replaces the roles
// and traits with the current ones.
type Caller struct {
	Kind   string
	User   string
	NodeID string
	Roles  []string
	Traits map[string][]string
	// RequestIDs are the access requests the certificate was issued for.
	RequestIDs []string
	// Issued is when auth issued the certificate (by its own clock).
	Issued time.Time
	// Expires is when the certificate expires (zero: not known).
	Expires time.Time
	// MFADevice is the MFA device of the login the certificate comes from.
	MFADevice string
	// BotInstance and BotGeneration: a bot's renewable identity (bots.go);
	// empty and 0 for every other certificate.
	BotInstance   string
	BotGeneration uint64
	// KeepPastExpiry is set by CurrentCaller: the current roles let
	// sessions outlive the certificate (disconnect_expired_cert: false, as
	// a bot's renewing sessions need), so the proxy's relays keep them too.
	KeepPastExpiry bool
}

// CallerFromTLS is the caller a verified TLS client certificate speaks
// for, as it was issued (check it with CurrentCaller before use). The API
// builds callers from the certificates clients present; the web UI from
// the certificate auth issued at the browser's sign-in.
func CallerFromTLS(leaf *x509.Certificate) (Caller, error) {
	id, err := ca.IdentityFromTLSCert(leaf)
	if err != nil {
		return Caller{}, err
	}
	if id.Kind == KindProxy {
		return Caller{Kind: KindProxy, User: "proxy", NodeID: id.NodeID, Issued: id.Issued, Expires: leaf.NotAfter}, nil
	}
	return Caller{Kind: id.Kind, User: id.Username, NodeID: id.NodeID, Roles: id.Roles, Traits: id.Traits,
		RequestIDs: id.RequestIDs, Issued: id.Issued, Expires: leaf.NotAfter, MFADevice: id.MFADevice,
		BotInstance: id.BotInstance, BotGeneration: id.BotGeneration}, nil
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

// LockSubject describes the caller's certificate for lock checks.
func (c Caller) LockSubject() lock.Subject {
	sub := lock.Subject{User: c.User, Roles: c.Roles, Requests: c.RequestIDs, Issued: c.Issued}
	if c.MFADevice != "" {
		sub.MFADevices = []string{c.MFADevice}
	}
	return sub
}

// CurrentCaller checks a user's certificate against the current state, on
// every API call and every connection the proxy routes: the user exists,
// has signed up, and was not reset and lost no role since the certificate
// was issued; each access request it carries is approved, unexpired and
// theirs; no lock matches. It returns the caller with the user's current
// roles (and those of its requests) and traits, so authorization never
// uses the roles baked into the certificate. Refusals are audited
// (cert.refused), with via naming where the certificate was used. Nodes
// and the local admin are returned unchanged.
func (s *Server) CurrentCaller(ctx context.Context, c Caller, via, remote string) (Caller, error) {
	if err := s.authorize(c, "CurrentCaller"); err != nil {
		return Caller{}, err
	}
	if c.Kind == KindProxy && c.NodeID != "" {
		if err := s.currentProxy(ctx, c); err != nil {
			return Caller{}, err
		}
		return c, nil
	}
	if c.Kind != KindUser {
		return c, nil
	}
	cur, err := s.currentCaller(ctx, c)
	if err != nil && ctx.Err() == nil {
		s.emit(ctx, audit.Event{Event: audit.CertRefused, User: c.User, RemoteAddr: remote, Success: false, Error: err.Error(),
			Fields: map[string]any{"via": via, "access_requests": c.RequestIDs, "cert_issued": c.Issued, "mfa_device": c.MFADevice}})
	}
	return cur, err
}

func (s *Server) currentCaller(ctx context.Context, c Caller) (Caller, error) {
	now := s.now()
	if !c.Expires.IsZero() && !now.Before(c.Expires) {
		return Caller{}, fmt.Errorf("%w: your certificate has expired; log in again", ErrUnauthenticated)
	}
	// Locks first, on what the certificate says: a revoked request or a
	// removed user answers with the lock's message.
	if err := s.CheckLock(c.LockSubject()); err != nil {
		return Caller{}, err
	}
	u, err := s.currentUser(ctx, c)
	if err != nil {
		return Caller{}, err
	}
	roles := slices.Clone(u.Roles)
	for _, id := range c.RequestIDs {
		r, err := s.currentRequest(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			return Caller{}, denied("access request %s no longer exists; log in again", id)
		}
		if err != nil {
			return Caller{}, err
		}
		if err := r.Usable(c.User, now); err != nil {
			return Caller{}, accessErr(err)
		}
		roles = append(roles, r.Roles...)
	}
	cur := c
	cur.Roles, cur.Traits = uniq(roles), u.Traits
	cur.KeepPastExpiry = !policy.MergeOptions(s.roles.get(cur.Roles)).DisconnectExpiredCert
	// A lock on a role the user holds now but the certificate does not name.
	if err := s.CheckLock(cur.LockSubject()); err != nil {
		return Caller{}, err
	}
	return cur, nil
}

// currentUser loads the user c's certificate speaks for, refusing the
// certificate when the user was removed, has not signed up again after a
// reset, or was reset or lost a role after it was issued.
func (s *Server) currentUser(ctx context.Context, c Caller) (*identity.User, error) {
	u, err := s.currentUserRecord(ctx, c.User)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, denied("user %q no longer exists", c.User)
	}
	if err != nil {
		return nil, err
	}
	if u.Status != identity.StatusActive {
		return nil, denied("user %q was reset: finish signing up with the new invite, then log in again", c.User)
	}
	if !u.CertCurrent(c.Issued) {
		return nil, denied("user %q was reset or lost a role after this certificate was issued; log in again", c.User)
	}
	return u, nil
}

// currentUserRecord is userRecord through the state cache (statecache.go):
// the same answer, as of the current state, without a storage read when
// nothing changed. It is a copy; its slices and maps are shared with the
// cache (clipped, so an append copies): read them only.
func (s *Server) currentUserRecord(ctx context.Context, name string) (*identity.User, error) {
	u, err := cachedValue[identity.User](ctx, s.state, prefixUsers+name)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("user %q %w", name, storage.ErrNotFound)
		}
		return nil, err
	}
	cp := *u
	cp.Roles = slices.Clip(cp.Roles)
	return &cp, nil
}

// currentRequest is loadRequest through the state cache (a copy, as
// currentUserRecord).
func (s *Server) currentRequest(ctx context.Context, id string) (*access.Request, error) {
	if id == "" || len(id) > 64 {
		return nil, badRequest("invalid access request id")
	}
	r, err := cachedValue[access.Request](ctx, s.state, prefixRequests+id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("access request %q %w", id, storage.ErrNotFound)
		}
		return nil, err
	}
	cp := *r
	cp.Roles = slices.Clip(cp.Roles)
	return &cp, nil
}
