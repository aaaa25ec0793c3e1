package auth

import (
	"context"
	"sync/atomic"
	"time"
)

// SweepRequests runs one pass of the access request sweeper, for tests that
// control the clock rather than wait for the ticker.
var SweepRequests = (*Server).sweepRequests

// CountPasswordChecks makes s count every password hash it checks in n,
// so tests can see that a login did (or did not) do the hash work.
func CountPasswordChecks(s *Server, n *atomic.Int64) {
	check := s.checkPassword
	s.checkPassword = func(ctx context.Context, hash, pw string) (bool, error) {
		n.Add(1)
		return check(ctx, hash, pw)
	}
}

// Checkpoint signs an audit checkpoint now, as the sweeper does every
// checkpoint interval.
var Checkpoint = (*Server).checkpoint

// OnMarkedComplete makes s call f between marking a recording complete and
// auditing its completion.
func OnMarkedComplete(s *Server, f func(id string)) { s.markedComplete = f }

// SetJWKSMinRefresh sets the least time between two fetches of an OIDC
// join issuer's keys, for a test; it returns the undo.
func SetJWKSMinRefresh(d time.Duration) func() {
	old := jwksMinRefresh
	jwksMinRefresh = d
	return func() { jwksMinRefresh = old }
}
