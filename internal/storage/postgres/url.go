package postgres

import (
	"net/url"
	"strings"
)

// HasPassword reports whether a connection string carries a password,
// in a URL's user info or a password=... pair (or ?password= in a URL).
// Warden refuses those in its config: the password comes from a file or
// the environment, so it is never in a config file, a log or a command
// line.
func HasPassword(conn string) bool {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u, err := url.Parse(conn)
		if err != nil {
			return true // cannot tell: refuse
		}
		if _, ok := u.User.Password(); ok {
			return true
		}
		return u.Query().Has("password")
	}
	for _, f := range strings.Fields(conn) {
		if k, _, ok := strings.Cut(f, "="); ok && strings.TrimSpace(k) == "password" {
			return true
		}
	}
	return strings.Contains(conn, "password")
}
