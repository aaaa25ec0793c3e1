package auth

import "github.com/warden-sh/warden/internal/policy"

// AllowedLogins is the logins c's roles and traits allow now (c as
// CurrentCaller returns it): "who am I" shows these, not the logins of
// the certificate issued at sign-in.
func (s *Server) AllowedLogins(c Caller) []string {
	if c.Kind != KindUser {
		return nil
	}
	return policy.AllowedLogins(s.roles.get(c.Roles), c.Traits)
}
