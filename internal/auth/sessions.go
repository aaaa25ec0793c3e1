package auth

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/wire"
)

const (
	prefixSessions = "/sessions/"
	// maxSessionRecord bounds how long a live-session record survives a
	// node that died without reporting the end.
	maxSessionRecord = 30 * time.Hour
)

// LiveSession is wire.LiveSession: the API carries it.
type LiveSession = wire.LiveSession

// trackSession keeps the live-session list from the node's events.
func (s *Server) trackSession(ctx context.Context, nodeID string, ev audit.Event) {
	if (ev.SessionID == "" && ev.Event != audit.NodeStart) || len(ev.SessionID) > 128 {
		return
	}
	key := prefixSessions + ev.SessionID
	switch ev.Event {
	case audit.SessionStart:
		if !ev.Success {
			return // refused before it began
		}
		ls := LiveSession{ID: ev.SessionID, User: ev.User, Login: ev.Login, Node: ev.Node, NodeID: nodeID,
			RemoteAddr: ev.RemoteAddr, Started: ev.Time, Participants: []string{ev.User}}
		ls.Kind, _ = ev.Fields["kind"].(string)
		ls.TTY, _ = ev.Fields["tty"].(bool)
		if err := s.putJSON(ctx, key, ls, s.now().Add(maxSessionRecord)); err != nil {
			s.log.Warn("record live session", "session", ev.SessionID, "err", err)
		}
	case audit.NodeStart:
		// The node (re)started: whatever sessions it had died with it.
		s.ForgetNodeSessions(ctx, nodeID)
	case audit.SessionJoin, audit.SessionLeave:
		if !ev.Success {
			return
		}
		var ls LiveSession
		if err := s.getJSON(ctx, key, &ls); err != nil || ls.NodeID != nodeID {
			return
		}
		ls.Participants = slices.DeleteFunc(ls.Participants, func(p string) bool { return p == ev.User })
		if ev.Event == audit.SessionJoin {
			ls.Participants = append(ls.Participants, ev.User)
		} else if ev.User == ls.User {
			ls.Participants = append([]string{ev.User}, ls.Participants...) // the owner stays
		}
		if err := s.putJSON(ctx, key, ls, s.now().Add(maxSessionRecord)); err != nil {
			s.log.Warn("update live session participants", "session", ev.SessionID, "err", err)
		}
	case audit.SessionEnd:
		var ls LiveSession
		// Only the node that runs a session may end its record.
		if err := s.getJSON(ctx, key, &ls); err == nil && ls.NodeID == nodeID {
			_ = s.b.Delete(ctx, key)
		}
	}
}

// ForgetNodeSessions drops the live-session records of a node that
// restarted: its sessions died with it.
func (s *Server) ForgetNodeSessions(ctx context.Context, nodeID string) {
	sessions, err := listJSON[LiveSession](ctx, s.b, prefixSessions)
	if err != nil {
		return
	}
	for _, ls := range sessions {
		if ls.NodeID == nodeID {
			_ = s.b.Delete(ctx, prefixSessions+ls.ID)
		}
	}
}

// ListSessions lists live interactive sessions.
func (s *Server) ListSessions(ctx context.Context, c Caller) ([]LiveSession, error) {
	if err := s.authorize(c, "ListSessions"); err != nil {
		return nil, err
	}
	out, err := listJSON[LiveSession](ctx, s.b, prefixSessions)
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}
