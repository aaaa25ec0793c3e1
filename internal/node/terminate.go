package node

import (
	"io"
	"time"

	"golang.org/x/crypto/ssh"
)

// ConnInfo describes a live connection, for continuous verification
// (locks, role changes).
type ConnInfo struct {
	User       string
	Login      string
	Roles      []string
	Cert       *ssh.Certificate
	RemoteAddr string
	Started    time.Time
	Sessions   int
	// JoinOnly connections only watch (or type into) others' sessions.
	JoinOnly bool
	// Identity is Permissions.Identity.
	Identity any
	// SessionIDs are the ids of the connection's sessions (a lock on one
	// session ends its connection).
	SessionIDs []string
}

func (c *conn) info() ConnInfo {
	c.mu.Lock()
	n := len(c.sessions)
	ids := make([]string, 0, n)
	for s := range c.sessions {
		ids = append(ids, s.id)
	}
	c.mu.Unlock()
	return ConnInfo{User: c.auth.perms.User, Login: c.auth.login, Roles: c.auth.perms.Roles, Cert: c.auth.cert,
		RemoteAddr: c.remote, Started: c.started, Sessions: n, JoinOnly: c.auth.perms.JoinOnly, Identity: c.auth.perms.Identity,
		SessionIDs: ids}
}

// Terminate ends every live connection for which match returns a non-empty
// reason: access was revoked. Each session's user sees the message on
// stderr, session.end records the reason, and with session cgroups every
// process the session started is killed, as are jobs that the user's
// earlier, ended sessions left running (session.jobs_killed). It returns
// how many connections were ended.
func (s *Server) Terminate(match func(ConnInfo) (reason, message string)) int {
	n := s.endMatching(match, true)
	if s.cgroups != nil {
		s.killDetached(match)
	}
	return n
}

// Disconnect ends every live connection for which match returns a
// non-empty reason when access could not be verified (rather than was
// revoked): like a hangup, the sessions' process groups get SIGHUP, and
// jobs the user detached live on. It returns how many connections were
// ended.
func (s *Server) Disconnect(match func(ConnInfo) (reason, message string)) int {
	return s.endMatching(match, false)
}

func (s *Server) endMatching(match func(ConnInfo) (reason, message string), revoke bool) int {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		if c.auth != nil {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	n := 0
	for _, c := range conns {
		if reason, msg := match(c.info()); reason != "" {
			n++
			go c.terminate(reason, msg, revoke)
		}
	}
	return n
}

// activityReader and activityWriter mark the connection active for the
// idle timeout as session data moves.
type activityReader struct {
	r io.Reader
	c *conn
}

func (a activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.c.touch()
	}
	return n, err
}

type activityWriter struct {
	w io.Writer
	c *conn
}

func (a activityWriter) Write(p []byte) (int, error) {
	a.c.touch()
	return a.w.Write(p)
}
