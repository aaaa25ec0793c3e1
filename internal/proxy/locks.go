package proxy

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
)

// DefaultLockGrace is how long the proxy lets a node end a newly locked
// session itself, so that the user sees the lock's message, before the
// proxy cuts the connection. Nodes normally act within tens of
// milliseconds; the proxy's cut bounds the time when a node is slow,
// overloaded or cut off from auth.
const DefaultLockGrace = 250 * time.Millisecond

// liveRelay is a user connection the proxy is relaying to a node.
type liveRelay struct {
	sub    lock.Subject
	remote string
	cut    func()
	// cutting is set once a cut is scheduled.
	cutting atomic.Bool
}

type relaySet struct {
	mu sync.Mutex
	m  map[*liveRelay]struct{}
}

// addRelay tracks r until the returned function is called. A lock that
// arrived since the connection was checked cuts it at once.
func (s *Server) addRelay(r *liveRelay) func() {
	s.relays.mu.Lock()
	s.relays.m[r] = struct{}{}
	s.relays.mu.Unlock()
	if s.cfg.Directory.CheckLock(r.sub) != nil {
		r.cutting.Store(true)
		r.cut()
	}
	return func() {
		s.relays.mu.Lock()
		delete(s.relays.m, r)
		s.relays.mu.Unlock()
	}
}

// lockMessage is a lock refusal as the user should read it.
func lockMessage(err error) string {
	return strings.TrimPrefix(err.Error(), auth.ErrAccessDenied.Error()+": ")
}

// newRelay tracks a user's connection to a node for lock checks; sub is
// the connection's lock subject (route): its certificate's issue time,
// requests and MFA device, the user's current roles, and the node.
func newRelay(sub lock.Subject, remote string, cut func()) *liveRelay {
	return &liveRelay{sub: sub, remote: remote, cut: cut}
}

// ReverifyLocks re-checks every relayed connection against the current
// locks; those a lock now matches are cut after the lock grace period
// unless their node ended them first. It does not block: call it whenever
// locks change.
func (s *Server) ReverifyLocks() {
	s.reverifyAgentless()
	s.relays.mu.Lock()
	var matched []*liveRelay
	for r := range s.relays.m {
		if r.cutting.Load() {
			continue
		}
		if s.cfg.Directory.CheckLock(r.sub) != nil && r.cutting.CompareAndSwap(false, true) {
			matched = append(matched, r)
		}
	}
	s.relays.mu.Unlock()
	if len(matched) == 0 {
		return
	}
	cut := func() {
		var events []audit.Event
		for _, r := range matched {
			s.relays.mu.Lock()
			_, live := s.relays.m[r]
			s.relays.mu.Unlock()
			if !live {
				continue // the node ended it first
			}
			// The lock may have been removed during the grace period.
			err := s.cfg.Directory.CheckLock(r.sub)
			if err == nil {
				r.cutting.Store(false)
				continue
			}
			r.cut()
			s.cfg.Metrics.LockCuts.Inc()
			events = append(events, audit.Event{Event: audit.ProxyDisconnect, User: r.sub.User, Node: r.sub.Node,
				RemoteAddr: r.remote, Success: true, Error: lockMessage(err),
				Fields: map[string]any{"reason": "locked"}})
		}
		// Audit after the cuts, off the critical path.
		if s.cfg.Audit != nil {
			if err := audit.EmitAll(context.Background(), s.cfg.Audit, events); err != nil {
				s.log.Error("audit emit failed", "event", audit.ProxyDisconnect, "err", err)
			}
		}
	}
	if s.cfg.LockGrace < 0 {
		go cut()
		return
	}
	time.AfterFunc(s.cfg.LockGrace, cut)
}
