package auth

import "github.com/warden-sh/warden/internal/policy"

// AllowedLogins is the logins c's roles and traits allow now (c as
// CurrentCaller returns it): "who am I" shows these, not the logins of
// the certificate issued at sign-in.
func (s *Server) AllowedLogins(c Caller) ([]string, error) {
	if err := s.authorize(c, "AllowedLogins"); err != nil {
		return nil, err
	}
	return policy.AllowedLogins(s.roles.get(c.Roles), c.Traits), nil
}
