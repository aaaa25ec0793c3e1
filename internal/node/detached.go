package node

import (
	"context"
	"log/slog"
	"time"

	"github.com/warden-sh/warden/internal/audit"
)

// maxDetached bounds the ended sessions whose leftover jobs a node tracks.
const maxDetached = 4096

// detachedJobs is a session that ended normally but left processes in its
// cgroup: who ran it, so that a later lock or role change on that user
// ends them too.
type detachedJobs struct {
	sessionID string
	cg        *sessionCgroup
	info      ConnInfo
	ended     time.Time
}

// trackDetached remembers an ended session whose cgroup still has
// processes.
func (s *Server) trackDetached(sessionID string, cg *sessionCgroup, info ConnInfo) {
	s.detMu.Lock()
	defer s.detMu.Unlock()
	if len(s.detached) >= maxDetached {
		s.pruneDetachedLocked()
	}
	if len(s.detached) >= maxDetached {
		s.log.Warn("too many ended sessions left jobs running; a lock will not end this one's",
			slog.String("session_id", sessionID), slog.String("user", info.User))
		return
	}
	s.detached[sessionID] = &detachedJobs{sessionID: sessionID, cg: cg, info: info, ended: s.cfg.Now()}
}

// pruneDetachedLocked forgets sessions whose jobs all exited. s.detMu is
// held.
func (s *Server) pruneDetachedLocked() {
	for id, d := range s.detached {
		if d.cg.rmdir() {
			delete(s.detached, id)
		}
	}
}

// killDetached kills the leftover jobs of ended sessions for which match
// returns a reason, auditing each.
func (s *Server) killDetached(match func(ConnInfo) (reason, message string)) {
	type hit struct {
		d      *detachedJobs
		reason string
	}
	var hits []hit
	s.detMu.Lock()
	s.pruneDetachedLocked()
	for id, d := range s.detached {
		if reason, _ := match(d.info); reason != "" {
			hits = append(hits, hit{d, reason})
			delete(s.detached, id)
		}
	}
	s.detMu.Unlock()
	for _, h := range hits {
		d := h.d
		n, err := d.cg.killDetached()
		ev := audit.Event{Event: audit.SessionJobsKilled, User: d.info.User, Login: d.info.Login, SessionID: d.sessionID,
			RemoteAddr: d.info.RemoteAddr, Success: err == nil,
			Fields: map[string]any{"reason": h.reason, "processes": n, "session_ended": d.ended.UTC()}}
		if err != nil {
			ev.Error = "could not kill the jobs: " + err.Error()
			s.log.Error("kill a revoked user's leftover jobs", slog.String("session_id", d.sessionID), slog.Any("err", err))
		}
		s.emit(context.Background(), ev)
	}
}
