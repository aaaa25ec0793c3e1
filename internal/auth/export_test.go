package auth

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/identity"
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

// CopySAMLPending stores a copy of the pending SAML login of relay under
// a new RelayState, which it returns: the same AuthnRequest ID twice, as
// if the RelayState's single use were bypassed (for the replay test).
func CopySAMLPending(t testing.TB, s *Server, relay string) string {
	t.Helper()
	var p ssoPending
	if err := s.getJSON(context.Background(), prefixSAMLPending+identity.HashToken(relay), &p); err != nil {
		t.Fatal(err)
	}
	relay2, err := identity.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.createJSON(context.Background(), prefixSAMLPending+identity.HashToken(relay2), p, s.now().Add(ssoPendingTTL)); err != nil {
		t.Fatal(err)
	}
	return relay2
}

// AgeSAMLMetadata makes the cached IdP metadata of connector name d older.
func AgeSAMLMetadata(s *Server, name string, d time.Duration) {
	c := &s.samlMeta
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[name]; ok {
		c.m[name] = &samlIdP{source: e.source, ed: e.ed, fetched: e.fetched.Add(-d)}
	}
}

// SetJWKSMinRefresh sets the least time between two fetches of an OIDC
// join issuer's keys, for a test; it returns the undo.
func SetJWKSMinRefresh(d time.Duration) func() {
	old := jwksMinRefresh
	jwksMinRefresh = d
	return func() { jwksMinRefresh = old }
}
