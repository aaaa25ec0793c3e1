package auth

import (
	"context"
	"fmt"
	"time"
)

// PutIssuedForBench records n issued certificates of user carrying role,
// as logins would, for BenchmarkKRL.
func PutIssuedForBench(s *Server, n int, user, role string, issued time.Time) error {
	for i := 0; i < n; i++ {
		// Each its own login: a distinct issue time.
		at := issued.Add(time.Duration(i) * time.Microsecond)
		rec := issuedCert{Serial: uint64(i + 1), User: user, Roles: []string{role}, Issued: at, Expires: at.Add(time.Hour)}
		if err := s.putJSON(context.Background(), fmt.Sprintf("%s%016x", prefixIssued, rec.Serial), rec, rec.Expires); err != nil {
			return err
		}
	}
	return nil
}

// BuildKRL builds the KRL without the cache.
func BuildKRL(s *Server) (*KRLResult, error) { return s.buildKRL(context.Background()) }

// IssuedCount is how many issued certificates the KRL's view holds.
func IssuedCount(s *Server) int {
	s.agentless.issuedMu.RLock()
	defer s.agentless.issuedMu.RUnlock()
	return len(s.agentless.issuedSet)
}
