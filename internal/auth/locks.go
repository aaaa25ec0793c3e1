package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

const prefixLocks = "/locks/"

// lockCache mirrors the stored locks into a lock.Set.
type lockCache struct {
	feed  *feed
	set   *lock.Set
	mu    sync.Mutex
	hooks []func()
	// next is closed at the next change (LocksChanged).
	next chan struct{}
}

// changed tells the hooks that locks changed.
func (c *lockCache) changed() {
	c.mu.Lock()
	hooks := c.hooks
	close(c.next)
	c.next = make(chan struct{})
	c.mu.Unlock()
	for _, h := range hooks {
		h()
	}
}

// LocksChanged returns a channel closed when locks are next added (as
// OnLocksChanged): long-lived API streams re-check their caller then.
func (s *Server) LocksChanged() <-chan struct{} {
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	return s.locks.next
}

// OnLocksChanged registers f, called (it must not block) when locks are
// added: created here (at once, and again when the watch delivers it) or by
// another auth server, or reloaded. Removals do not call it: they end
// nothing. The proxy uses it to cut live connections a new lock matches.
func (s *Server) OnLocksChanged(f func()) {
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	s.locks.hooks = append(s.locks.hooks, f)
}

func newLockCache(s *Server) *lockCache {
	c := &lockCache{set: lock.NewSet(), next: make(chan struct{})}
	c.feed = &feed{b: s.b, log: s.log, prefix: prefixLocks,
		reset: func(items []storage.Item) {
			locks := make([]*lock.Lock, 0, len(items))
			for _, it := range items {
				var l lock.Lock
				if json.Unmarshal(it.Value, &l) == nil {
					locks = append(locks, &l)
				}
			}
			c.set.Replace(locks)
			c.changed()
		},
		apply: func(ev storage.Event) {
			if ev.Type == storage.EventDelete {
				c.set.Delete(strings.TrimPrefix(ev.Item.Key, prefixLocks))
				return
			}
			var l lock.Lock
			if json.Unmarshal(ev.Item.Value, &l) == nil {
				c.set.Put(&l)
				c.changed()
			}
		}}
	return c
}

// CreateLockRequest is wire.CreateLockRequest: the API carries it.
type CreateLockRequest = wire.CreateLockRequest

// CreateLockResult is wire.CreateLockResult: the API carries it.
type CreateLockResult = wire.CreateLockResult

// CreateLock locks a target now. Matching live sessions end and new
// certificates, connections and API calls are refused until the lock
// expires or is removed.
func (s *Server) CreateLock(ctx context.Context, c Caller, req CreateLockRequest) (*CreateLockResult, error) {
	if err := s.authorize(c, "CreateLock"); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	l := &lock.Lock{Target: req.Target, Message: req.Message, CreatedBy: c.Name(), CreatedAt: now}
	switch {
	case req.TTL < 0:
		return nil, badRequest("the lock TTL must be positive")
	case req.TTL > 0 && !req.Expires.IsZero():
		return nil, badRequest("give either a TTL or an expiry time, not both")
	case req.TTL > 0:
		l.Expires = now.Add(req.TTL)
	case !req.Expires.IsZero():
		if !req.Expires.After(now) {
			return nil, badRequest("the lock expiry %s is in the past", req.Expires.Format(time.RFC3339))
		}
		l.Expires = req.Expires.UTC()
	}
	if err := l.Validate(); err != nil {
		return nil, badRequest("%v", err)
	}
	if err := s.storeLock(ctx, c, l); err != nil {
		return nil, err
	}
	res := &CreateLockResult{Lock: l}
	if w := s.unknownTargetWarning(ctx, l.Target); w != "" {
		res.Warnings = append(res.Warnings, w)
	}
	return res, nil
}

// storeLock gives l an id, stores it (with its expiry as TTL), applies it
// here at once and audits it. The watch takes it to nodes and the proxy.
func (s *Server) storeLock(ctx context.Context, c Caller, l *lock.Lock) error {
	id, err := lock.NewID()
	if err != nil {
		return err
	}
	l.ID = id
	if err := s.createJSON(ctx, prefixLocks+id, l, l.Expires); err != nil {
		return fmt.Errorf("store lock: %w", err)
	}
	// Apply locally at once: the next call on this auth server sees it,
	// without waiting for the watch.
	s.locks.set.Put(l)
	s.locks.changed()
	fields := map[string]any{"lock_id": id, "target": l.Target.String(), "message": l.Message, "expires": l.Expires}
	if !l.IssuedNotAfter.IsZero() {
		fields["issued_not_after"] = l.IssuedNotAfter
	}
	s.emit(ctx, audit.Event{Event: audit.LockCreated, User: c.Name(), Success: true, Fields: fields})
	return nil
}

// voidCerts cuts off every certificate of user issued until now,
// everywhere at once: a lock on the user limited to those certificates
// (lock.Lock.IssuedNotAfter), which auth, the proxy and every node enforce
// as they do any lock, ending live sessions too. It lasts as long as such a
// certificate can (issueCerts keeps every user certificate within
// maxUserTTL of its issue time). Certificates issued later are not
// affected, so the user can sign up or log in again.
func (s *Server) voidCerts(ctx context.Context, c Caller, user, message string) error {
	now := s.now().UTC()
	l := &lock.Lock{Target: lock.Target{User: user}, Message: message, CreatedBy: c.Name(), CreatedAt: now,
		IssuedNotAfter: now, Expires: now.Add(maxUserTTL + time.Minute)}
	if err := s.storeLock(ctx, c, l); err != nil {
		return fmt.Errorf("void the certificates of user %q: %w (lock the user to cut them off)", user, err)
	}
	return nil
}

func (s *Server) unknownTargetWarning(ctx context.Context, t lock.Target) string {
	exists := func(key string) bool {
		_, err := s.b.Get(ctx, key)
		return !errors.Is(err, storage.ErrNotFound)
	}
	switch {
	case t.User != "" && !exists(prefixUsers+t.User):
		return fmt.Sprintf("no user %q exists yet; the lock applies if one appears", t.User)
	case t.Role != "" && !exists(prefixRoles+t.Role):
		return fmt.Sprintf("no role %q exists yet; the lock applies if one appears", t.Role)
	case t.Node != "":
		if exists(prefixNodeReg + t.Node) {
			return ""
		}
		for _, n := range s.liveNodes() {
			if n.Name == t.Node {
				return ""
			}
		}
		return fmt.Sprintf("no node %q is connected; the lock applies if one appears", t.Node)
	}
	return ""
}

// ListLocks lists locks in force.
func (s *Server) ListLocks(ctx context.Context, c Caller) ([]*lock.Lock, error) {
	if err := s.authorize(c, "ListLocks"); err != nil {
		return nil, err
	}
	now := s.now()
	var out []*lock.Lock
	for _, l := range s.locks.set.List() {
		if l.InForce(now) {
			out = append(out, l)
		}
	}
	return out, nil
}

// DeleteLock removes a lock; access comes back at once.
func (s *Server) DeleteLock(ctx context.Context, c Caller, id string) error {
	if err := s.authorize(c, "DeleteLock"); err != nil {
		return err
	}
	if len(id) > 64 {
		return badRequest("invalid lock id")
	}
	var l lock.Lock
	if err := s.getJSON(ctx, prefixLocks+id, &l); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("lock %q %w", id, storage.ErrNotFound)
		}
		return err
	}
	if err := s.b.Delete(ctx, prefixLocks+id); err != nil {
		return err
	}
	s.locks.set.Delete(id)
	s.emit(ctx, audit.Event{Event: audit.LockDeleted, User: c.Name(), Success: true,
		Fields: map[string]any{"lock_id": id, "target": l.Target.String()}})
	return nil
}

// CheckLock returns a denial if a lock in force matches sub.
func (s *Server) CheckLock(sub lock.Subject) error {
	if l := s.locks.set.Check(sub, s.now()); l != nil {
		return fmt.Errorf("%w: %s", ErrAccessDenied, l.UserMessage())
	}
	return nil
}

// CheckCaller refuses a locked user. The in-process node's calls use it;
// API calls go through CurrentCaller, which checks locks and more.
func (s *Server) CheckCaller(c Caller) error {
	if err := s.authorize(c, "CheckCaller"); err != nil {
		return err
	}
	if c.Kind == KindUser {
		return s.CheckLock(c.LockSubject())
	}
	return nil
}
