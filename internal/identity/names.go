package identity

import (
	"errors"
	"fmt"
)

// MaxUsernameLen and MaxLoginLen bound Warden usernames and OS logins.
const (
	MaxUsernameLen = 64
	MaxLoginLen    = 64
)

// ValidateUsername checks a Warden username: 1 to 64 characters, lower-case
// letters, digits, '.', '_' and '-', starting with a letter or '_'. Usernames
// end up in certificate key IDs, audit events and file names, so the set is
// kept small on purpose.
func ValidateUsername(name string) error {
	if name == "" {
		return errors.New("username is empty")
	}
	if len(name) > MaxUsernameLen {
		return fmt.Errorf("username is %d bytes long; at most %d are allowed", len(name), MaxUsernameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '-'):
		case i == 0:
			return fmt.Errorf("username %q must start with a lower-case letter or '_'", name)
		default:
			return fmt.Errorf("username %q has %s at position %d; only a-z, 0-9, '.', '_' and '-' are allowed", name, describeByte(c), i+1)
		}
	}
	return nil
}

// ValidateLogin checks an OS login name that a certificate may carry as a
// principal: 1 to 64 characters of letters, digits, '.', '_' and '-', not
// starting with '-' or '.', not all digits (it would read as a UID), with an
// optional trailing '$' (Samba machine accounts). Spaces, '@', ':', '/',
// ',' and control characters are refused.
func ValidateLogin(login string) error {
	if login == "" {
		return errors.New("login is empty")
	}
	if len(login) > MaxLoginLen {
		return fmt.Errorf("login is %d bytes long; at most %d are allowed", len(login), MaxLoginLen)
	}
	digits := 0
	for i := 0; i < len(login); i++ {
		c := login[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9':
			digits++
		case c == '-' || c == '.':
			if i == 0 {
				return fmt.Errorf("login %q must not start with %q", login, c)
			}
		case c == '$' && i == len(login)-1 && i > 0:
		default:
			return fmt.Errorf("login %q has %s at position %d; only letters, digits, '.', '_' and '-' are allowed", login, describeByte(c), i+1)
		}
	}
	if digits == len(login) {
		return fmt.Errorf("login %q is all digits and would be taken for a numeric user ID", login)
	}
	return nil
}

func describeByte(c byte) string {
	switch {
	case c == ' ':
		return "a space"
	case c < 0x20 || c == 0x7f:
		return fmt.Sprintf("control character 0x%02x", c)
	case c >= 0x80:
		return "a non-ASCII character"
	default:
		return fmt.Sprintf("%q", c)
	}
}
