package postgres

import (
	"net/url"
	"strings"
	"testing"
)

func TestHasPassword(t *testing.T) {
	for conn, want := range map[string]bool{
		"postgres://warden@db:5432/warden":                                        false,
		"postgresql://warden@db1:5432,db2:5432/w?target_session_attrs=read-write": false,
		"host=db user=warden dbname=warden":                                       false,
		"postgres://warden:pw@db/warden":                                          true,
		"postgres://warden:@db/warden":                                            true,
		"postgres://warden@db/warden?password=pw":                                 true,
		"host=db password=pw":                                                     true,
		"host=db password = pw":                                                   true,
		"postgres://war den:pw@db/%zz":                                            true, // unparsable: refused
	} {
		if got := HasPassword(conn); got != want {
			t.Errorf("HasPassword(%q) = %v, want %v", conn, got, want)
		}
	}
}

// FuzzHasPassword: a connection string from which a URL parser or a
// key=value reading could take a password is always refused.
func FuzzHasPassword(f *testing.F) {
	f.Add("postgres://u:p@h/d")
	f.Add("postgres://u@h/d?password=x")
	f.Add("host=h password=x")
	f.Add("postgres://u@h/d")
	f.Fuzz(func(t *testing.T, conn string) {
		has := HasPassword(conn)
		if u, err := url.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") && strings.HasPrefix(conn, u.Scheme+"://") {
			if _, ok := u.User.Password(); ok && !has {
				t.Fatalf("URL %q has a password: not refused", conn)
			}
			if u.Query().Has("password") && !has {
				t.Fatalf("URL %q has ?password: not refused", conn)
			}
		}
		if !strings.Contains(conn, "://") && strings.Contains(conn, "password") && !has {
			t.Fatalf("%q names a password: not refused", conn)
		}
	})
}
