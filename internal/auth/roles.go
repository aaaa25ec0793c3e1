package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
)

// roleCache keeps the current role definitions in memory, fed by a storage
// watch, so that decisions are map lookups.
type roleCache struct {
	feed  *feed
	mu    sync.RWMutex
	roles map[string]*policy.Role
	// hooks are called (they must not block) after the roles change.
	hookMu sync.Mutex
	hooks  []func()
}

// changed tells the hooks that the roles changed.
func (c *roleCache) changed() {
	c.hookMu.Lock()
	hooks := c.hooks
	c.hookMu.Unlock()
	for _, h := range hooks {
		h()
	}
}

// OnRolesChanged registers f, called (it must not block) whenever a role
// is created, edited or deleted, here or on another auth server (the
// storage watch delivers it), once the new definitions are in force. The
// proxy uses it to decide its live agentless sessions again: a role edit
// that no longer allows one ends it.
func (s *Server) OnRolesChanged(f func()) {
	s.roles.hookMu.Lock()
	defer s.roles.hookMu.Unlock()
	s.roles.hooks = append(s.roles.hooks, f)
}

func newRoleCache(b storage.Backend, log *slog.Logger) *roleCache {
	c := &roleCache{roles: map[string]*policy.Role{}}
	c.feed = &feed{b: b, log: log, prefix: prefixRoles, reset: c.reset, apply: c.apply}
	return c
}

func (c *roleCache) start(ctx context.Context) error { return c.feed.start(ctx) }
func (c *roleCache) stop()                           { c.feed.stop() }

func (c *roleCache) reset(items []storage.Item) {
	m := make(map[string]*policy.Role, len(items))
	for _, it := range items {
		var r policy.Role
		if err := json.Unmarshal(it.Value, &r); err != nil {
			c.feed.log.Error("skipping undecodable role", "key", it.Key, "err", err)
			continue
		}
		m[r.Metadata.Name] = &r
	}
	c.mu.Lock()
	c.roles = m
	c.mu.Unlock()
	c.changed()
}

func (c *roleCache) apply(ev storage.Event) {
	name := strings.TrimPrefix(ev.Item.Key, prefixRoles)
	if ev.Type == storage.EventDelete {
		c.mu.Lock()
		delete(c.roles, name)
		c.mu.Unlock()
		c.changed()
		return
	}
	var r policy.Role
	if err := json.Unmarshal(ev.Item.Value, &r); err != nil {
		c.feed.log.Error("skipping undecodable role", "key", ev.Item.Key, "err", err)
		return
	}
	c.mu.Lock()
	c.roles[name] = &r
	c.mu.Unlock()
	c.changed()
}

// get resolves role names to their current definitions; unknown names are
// skipped (a deleted role grants nothing).
func (c *roleCache) get(names []string) []*policy.Role {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*policy.Role, 0, len(names))
	for _, n := range names {
		if r, ok := c.roles[n]; ok {
			out = append(out, r)
		}
	}
	return out
}

// ResolveRoles returns the current definitions of the named roles.
func (s *Server) ResolveRoles(names []string) []*policy.Role { return s.roles.get(names) }

// UpsertRole creates or replaces a role.
func (s *Server) UpsertRole(ctx context.Context, c Caller, r *policy.Role) error {
	if err := s.authorize(c, "UpsertRole"); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return badRequest("role %q: %v", r.Metadata.Name, err)
	}
	_, getErr := s.b.Get(ctx, prefixRoles+r.Metadata.Name)
	if err := s.putJSON(ctx, prefixRoles+r.Metadata.Name, r, time.Time{}); err != nil {
		return fmt.Errorf("store role: %w", err)
	}
	op := "updated"
	if errors.Is(getErr, storage.ErrNotFound) {
		op = "created"
	}
	s.emit(ctx, audit.Event{Event: audit.RoleApply, User: c.Name(), Success: true,
		Fields: map[string]any{"role": r.Metadata.Name, "operation": op}})
	return nil
}

// GetRole returns one role.
func (s *Server) GetRole(ctx context.Context, c Caller, name string) (*policy.Role, error) {
	if err := s.authorize(c, "GetRole"); err != nil {
		return nil, err
	}
	var r policy.Role
	if err := s.getJSON(ctx, prefixRoles+name, &r); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("role %q %w", name, storage.ErrNotFound)
		}
		return nil, err
	}
	return &r, nil
}

// ListRoles returns all roles sorted by name.
func (s *Server) ListRoles(ctx context.Context, c Caller) ([]*policy.Role, error) {
	if err := s.authorize(c, "ListRoles"); err != nil {
		return nil, err
	}
	roles, err := listJSON[*policy.Role](ctx, s.b, prefixRoles)
	if err != nil {
		return nil, err
	}
	sort.Slice(roles, func(i, j int) bool { return roles[i].Metadata.Name < roles[j].Metadata.Name })
	return roles, nil
}

// DeleteRole removes a role. Users holding it lose what it granted at once.
func (s *Server) DeleteRole(ctx context.Context, c Caller, name string) error {
	if err := s.authorize(c, "DeleteRole"); err != nil {
		return err
	}
	if err := s.b.Delete(ctx, prefixRoles+name); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("role %q %w", name, storage.ErrNotFound)
		}
		return err
	}
	s.emit(ctx, audit.Event{Event: audit.RoleDelete, User: c.Name(), Success: true,
		Fields: map[string]any{"role": name}})
	return nil
}
