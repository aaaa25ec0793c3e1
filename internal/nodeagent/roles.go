package nodeagent

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/node"
)

// roleWatcher feeds the node's access decision (node.Access) the current
// role definitions and locks from auth, pushed over one watch stream and
// re-synced on reconnect, and tells it how fresh its view is, for
// lock_mode strict.
type roleWatcher struct {
	c      *api.Client
	log    *slog.Logger
	access *node.Access
	synced chan struct{}
	once   sync.Once
	// onChange is called after every lock or role change (to re-evaluate
	// live sessions).
	onChange func(kind string)
	// sleep waits d before a reconnect, false if ctx ended first (tests
	// replace it).
	sleep func(ctx context.Context, d time.Duration) bool
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter is a reconnect wait for the backoff step d: uniformly random in
// [d/2, d], so that a fleet of nodes cut off at the same moment (an auth
// or proxy restart) does not come back in lockstep.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func newRoleWatcher(c *api.Client, log *slog.Logger, access *node.Access) *roleWatcher {
	return &roleWatcher{c: c, log: log, access: access, synced: make(chan struct{}), sleep: sleepCtx}
}

func (w *roleWatcher) run(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := w.c.Watch(ctx, w.apply)
		w.access.Lost()
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 30*time.Second {
			backoff = 250 * time.Millisecond
		}
		wait := jitter(backoff)
		w.log.Warn("role watch ended; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		if !w.sleep(ctx, wait) {
			return
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (w *roleWatcher) apply(ev api.WatchEvent) {
	w.access.Confirm()
	changed := ""
	switch {
	case ev.Type == "snapshot":
		w.access.Replace(ev.Roles, ev.Locks)
		w.access.SetRequireSessionMFA(ev.RequireSessionMFA)
		w.once.Do(func() { close(w.synced) })
		changed = "snapshot"
	case ev.Kind == "role" && ev.Type == "put":
		if ev.Role != nil && w.access.PutRole(ev.Role) {
			changed = "role"
		}
	case ev.Kind == "role" && ev.Type == "delete":
		w.access.DeleteRole(ev.Name)
		changed = "role"
	case ev.Kind == "lock" && ev.Type == "put":
		if ev.Lock != nil {
			w.access.PutLock(ev.Lock)
			changed = "lock"
		}
	case ev.Kind == "lock" && ev.Type == "delete":
		w.access.DeleteLock(ev.Name)
		changed = "lock"
	}
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
