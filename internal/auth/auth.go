// Package auth is the auth service: the cluster's authority. It holds the CAs,
// users, roles, join tokens and the node inventory, authenticates logins and
// issues short-lived certificates. It is plain Go over storage.Backend; the
// api package exposes it over HTTPS.
package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/notify"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage"
)

// Config configures the auth service.
type Config struct {
	ClusterName string
	Backend     storage.Backend
	Audit       audit.Store
	// PublicAddr is the proxy address users reach (host:port), used in
	// invite links.
	PublicAddr string
	Now        func() time.Time
	Logger     *slog.Logger
	// DefaultTTL is the user certificate TTL when the client asks for none.
	DefaultTTL time.Duration
	// InviteTTL is how long a signup invite is valid.
	InviteTTL time.Duration
	// NodeCertTTL is the validity of node host and API certificates.
	NodeCertTTL time.Duration
	// RequestPendingTTL is how long an unreviewed access request lives
	// (default 1h).
	RequestPendingTTL time.Duration
	// Notifier receives access request notifications (optional).
	Notifier *notify.Notifier
	// SweepInterval is how often expiries are processed (default 5s).
	SweepInterval time.Duration
	// Recordings stores session recordings (nil: none kept here).
	Recordings *recording.Store
	// EventRetention and RecordingRetention delete older audit events and
	// recordings (0: keep forever).
	EventRetention     time.Duration
	RecordingRetention time.Duration
	// SourceLimit and AccountLimit throttle failed logins and signups per
	// client address, and per address and account name (defaults:
	// DefaultSourceLimit, DefaultAccountLimit). No account is ever locked
	// for everyone. The address is the TCP peer of the request.
	SourceLimit  identity.ThrottleLimit
	AccountLimit identity.ThrottleLimit
	// AuditKey signs checkpoints of the audit log every CheckpointInterval
	// (DefaultCheckpointInterval if zero) and when auth stops. Keep it out
	// of the database: whoever holds it can re-sign a rewritten log. Nil:
	// no checkpoints.
	AuditKey           ed25519.PrivateKey
	CheckpointInterval time.Duration
	// WebAuthn is the passkeys' relying party (default: from PublicAddr).
	WebAuthn WebAuthnConfig
	// RequirePasskey requires local users to sign in with a passkey (or
	// security key): password and TOTP alone are refused (mfa.go).
	RequirePasskey bool
	// RequireSessionMFA makes every new session to any node need a
	// per-session MFA check (sessionmfa.go), as require_session_mfa in
	// every role would.
	RequireSessionMFA bool
}

// Server is the auth service.
type Server struct {
	oidc     oidcProviders
	samlMeta samlIdPs
	// jwks caches the keys of the issuers OIDC join tokens trust (bots).
	jwks  jwksCache
	wa    webAuthnRP
	cfg   Config
	b     storage.Backend
	ca    *ca.Authority
	log   *slog.Logger
	now   func() time.Time
	roles *roleCache
	locks *lockCache
	// state caches user records and access requests for CurrentCaller
	// (statecache.go); b invalidates it on every write.
	state *stateCache
	// notifier sends access request webhooks (nil: none configured).
	notifier  *notify.Notifier
	sweepStop context.CancelFunc
	sweepDone chan struct{}
	// inventory is the live node set, set by the proxy.
	inventory atomic.Pointer[Inventory]
	// kubeInventory is the live Kubernetes cluster set, set by the proxy.
	kubeInventory atomic.Pointer[KubeInventory]
	// inventoryCache is the last read of the proxies' published
	// inventories (StoredInventory).
	inventoryCache atomic.Pointer[cachedInventory]
	// nodeRegs caches node registrations (id → NodeRegistration).
	nodeRegs sync.Map
	// throttle counts failed logins and signups (see beginAttempt).
	throttle *identity.Throttle
	// dummyHash is checked for a login whose user cannot log in (unknown,
	// or invited but not signed up), so that costs what a real check does.
	dummyHash string
	// checkPassword is identity.CheckPassword (tests count its calls).
	checkPassword func(ctx context.Context, hash, password string) (bool, error)
	// cpPos is the last audit checkpoint this process trusts (cpLoaded:
	// looked up in the log once); cpMu serializes checkpoints.
	cpMu     sync.Mutex
	cpPos    audit.ChainPos
	cpLoaded bool
	// completing serializes a recording's completion with the reads that
	// find it complete (completionLock).
	completing [16]sync.Mutex
	// markedComplete, if set (tests), runs between marking a recording
	// complete and auditing its completion.
	markedComplete func(id string)
	// agentless is what auth keeps in memory of agentless servers.
	agentless agentlessState
}

const (
	prefixUsers   = "/users/"
	prefixRoles   = "/roles/"
	prefixInvites = "/invites/"
	prefixTokens  = "/tokens/"
	keyCA         = "/ca/keys"
)

// New loads (or on first start generates) the cluster's CAs, seeds the
// built-in roles and returns a ready service.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("auth: Backend is required")
	}
	if cfg.Audit == nil {
		return nil, errors.New("auth: Audit is required")
	}
	if cfg.ClusterName == "" {
		return nil, errors.New("auth: ClusterName is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = 8 * time.Hour
	}
	if cfg.InviteTTL <= 0 {
		cfg.InviteTTL = 24 * time.Hour
	}
	if cfg.NodeCertTTL <= 0 {
		cfg.NodeCertTTL = 24 * time.Hour
	}
	if cfg.RequestPendingTTL <= 0 {
		cfg.RequestPendingTTL = time.Hour
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	if cfg.SourceLimit == (identity.ThrottleLimit{}) {
		cfg.SourceLimit = DefaultSourceLimit
	}
	if cfg.AccountLimit == (identity.ThrottleLimit{}) {
		cfg.AccountLimit = DefaultAccountLimit
	}
	for _, l := range []identity.ThrottleLimit{cfg.SourceLimit, cfg.AccountLimit} {
		if l.Burst < 1 || l.Every <= 0 || l.MaxWait < l.Every {
			return nil, fmt.Errorf("auth: throttle limit %+v: want Burst >= 1, Every > 0, MaxWait >= Every", l)
		}
	}
	dummy, err := identity.DummyHash()
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = audit.DefaultCheckpointInterval
	}
	if cfg.AuditKey != nil && len(cfg.AuditKey) != ed25519.PrivateKeySize {
		return nil, errors.New("auth: AuditKey is not an Ed25519 private key")
	}
	s := &Server{cfg: cfg, b: cfg.Backend, log: cfg.Logger, now: cfg.Now, notifier: cfg.Notifier,
		throttle: identity.NewThrottle(cfg.Now, 0), dummyHash: dummy, checkPassword: identity.CheckPassword}
	s.state = newStateCache(cfg.Backend, cfg.Logger, cfg.Now)
	s.b = cachingBackend{Backend: cfg.Backend, cache: s.state}
	s.state.start(ctx)
	ok := false
	defer func() {
		if !ok {
			s.state.stop()
		}
	}()
	keys, err := s.loadOrCreateCA(ctx)
	if err != nil {
		return nil, err
	}
	if keys.ClusterName != cfg.ClusterName {
		return nil, fmt.Errorf("auth: data belongs to cluster %q, not %q", keys.ClusterName, cfg.ClusterName)
	}
	s.ca, err = ca.New(keys, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("auth: load CAs: %w", err)
	}
	for _, r := range policy.BuiltinRoles() {
		if err := s.createJSON(ctx, prefixRoles+r.Metadata.Name, r, time.Time{}); err != nil && !errors.Is(err, storage.ErrAlreadyExists) {
			return nil, fmt.Errorf("auth: seed role %s: %w", r.Metadata.Name, err)
		}
	}
	s.roles = newRoleCache(s.b, s.log)
	if err := s.roles.start(ctx); err != nil {
		return nil, fmt.Errorf("auth: watch roles: %w", err)
	}
	s.locks = newLockCache(s)
	if err := s.locks.feed.start(ctx); err != nil {
		s.roles.stop()
		return nil, fmt.Errorf("auth: watch locks: %w", err)
	}
	if err := s.startIssued(ctx); err != nil {
		s.roles.stop()
		s.locks.feed.stop()
		return nil, fmt.Errorf("auth: watch issued certificates: %w", err)
	}
	s.startSweeper(ctx)
	ok = true
	return s, nil
}

func (s *Server) loadOrCreateCA(ctx context.Context) (*ca.Keys, error) {
	var keys ca.Keys
	err := s.getJSON(ctx, keyCA, &keys)
	if err == nil {
		return &keys, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("auth: load CA keys: %w", err)
	}
	gen, err := ca.GenerateKeys(s.cfg.ClusterName)
	if err != nil {
		return nil, fmt.Errorf("auth: generate CA keys: %w", err)
	}
	if err := s.createJSON(ctx, keyCA, gen, time.Time{}); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return s.loadOrCreateCA(ctx)
		}
		return nil, fmt.Errorf("auth: store CA keys: %w", err)
	}
	s.log.Info("generated cluster certificate authorities", "cluster", s.cfg.ClusterName)
	return gen, nil
}

// Authority returns the cluster's CA (public parts are safe to share).
func (s *Server) Authority() *ca.Authority { return s.ca }

// ClusterName returns the cluster name.
func (s *Server) ClusterName() string { return s.cfg.ClusterName }

// Close stops background work and signs a last audit checkpoint, so that a
// log left by a clean stop is signed to its end.
func (s *Server) Close() error {
	s.sweepStop()
	<-s.sweepDone
	s.roles.stop()
	s.locks.feed.stop()
	s.agentless.issued.stop()
	s.state.stop()
	s.checkpoint(context.Background())
	return nil
}

// startSweeper runs periodic housekeeping: access request expiry.
func (s *Server) startSweeper(ctx context.Context) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.sweepStop, s.sweepDone = cancel, make(chan struct{})
	go func() {
		defer close(s.sweepDone)
		t := time.NewTicker(s.cfg.SweepInterval)
		defer t.Stop()
		lastRetention, lastCheckpoint := time.Time{}, time.Time{}
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.sweepRequests(ctx)
				if time.Since(lastCheckpoint) >= s.cfg.CheckpointInterval {
					lastCheckpoint = time.Now()
					s.checkpoint(ctx)
				}
				if time.Since(lastRetention) > time.Hour {
					lastRetention = time.Now()
					s.applyRetention(ctx)
				}
			}
		}
	}()
}

func (s *Server) emit(ctx context.Context, ev audit.Event) {
	if ev.Time.IsZero() {
		ev.Time = s.now().UTC()
	}
	if err := s.cfg.Audit.Emit(ctx, ev); err != nil {
		s.log.Error("audit emit failed", "event", ev.Event, "err", err)
	}
}

func (s *Server) getJSON(ctx context.Context, key string, v any) error {
	it, err := s.b.Get(ctx, key)
	if err != nil {
		return err
	}
	return json.Unmarshal(it.Value, v)
}

func (s *Server) getJSONRev(ctx context.Context, key string, v any) (int64, error) {
	it, err := s.b.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	return it.Revision, json.Unmarshal(it.Value, v)
}

func (s *Server) putJSON(ctx context.Context, key string, v any, expires time.Time) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = s.b.Put(ctx, storage.Item{Key: key, Value: data, Expires: expires})
	return err
}

func (s *Server) createJSON(ctx context.Context, key string, v any, expires time.Time) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = s.b.Create(ctx, storage.Item{Key: key, Value: data, Expires: expires})
	return err
}

func (s *Server) casJSON(ctx context.Context, key string, rev int64, v any, expires time.Time) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = s.b.CompareAndSwap(ctx, rev, storage.Item{Key: key, Value: data, Expires: expires})
	return err
}

func listJSON[T any](ctx context.Context, b storage.Backend, prefix string) ([]T, error) {
	items, err := b.List(ctx, prefix, 0)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(items))
	for _, it := range items {
		var v T
		if err := json.Unmarshal(it.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", it.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}
