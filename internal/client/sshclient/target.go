package sshclient

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds on user input. They are generous for real use and keep hostile input
// (a megabyte-long "hostname") from travelling further into the program.
const (
	maxTargetLen = 1024
	maxLoginLen  = 256
	maxHostLen   = 253 // longest DNS name
	maxPathLen   = 4096
)

// ParseTarget parses "login@host[:port]", "host[:port]", "[ipv6]:port" or a
// bare IPv6 address. login is "" and port is 0 when not given. The login is
// everything before the last '@' (as OpenSSH does), so "user@corp@host" has
// the login "user@corp".
func ParseTarget(s string) (login, host string, port int, err error) {
	if len(s) > maxTargetLen {
		return "", "", 0, fmt.Errorf("target too long (%d bytes, at most %d)", len(s), maxTargetLen)
	}
	if s == "" {
		return "", "", 0, errors.New("empty target: want [login@]host[:port]")
	}
	rest := s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		login, rest = s[:i], s[i+1:]
		if err := validateLogin(login); err != nil {
			return "", "", 0, fmt.Errorf("target %q: %w", s, err)
		}
	}
	host, portStr, err := splitHostPort(rest)
	if err != nil {
		return "", "", 0, fmt.Errorf("target %q: %w", s, err)
	}
	if portStr != "" {
		if port, err = parsePort(portStr); err != nil {
			return "", "", 0, fmt.Errorf("target %q: %w", s, err)
		}
	}
	if err := validateHost(host); err != nil {
		return "", "", 0, fmt.Errorf("target %q: %w", s, err)
	}
	return login, host, port, nil
}

// ParseCopyArg tells an scp-style remote argument "[login@]host:path" from a
// local path. Like scp, an argument is local when it has no ':' or when a '/'
// comes before the first ':' ("./a:b", "/tmp/x:y"), or when it starts with ':'.
// IPv6 hosts are written in brackets: "[::1]:file". An empty remote path
// ("host:") means the remote home directory. For a local argument, path is s.
func ParseCopyArg(s string) (login, host, path string, isRemote bool, err error) {
	if s == "" {
		return "", "", "", false, errors.New("empty path")
	}
	if len(s) > maxTargetLen+maxPathLen {
		return "", "", "", false, fmt.Errorf("argument too long (%d bytes)", len(s))
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", "", "", false, errors.New("path contains a NUL byte")
	}
	sep := remoteSep(s)
	if sep < 0 {
		if len(s) > maxPathLen {
			return "", "", "", false, fmt.Errorf("local path too long (%d bytes, at most %d)", len(s), maxPathLen)
		}
		return "", "", s, false, nil
	}
	spec, path := s[:sep], s[sep+1:]
	if len(path) > maxPathLen {
		return "", "", "", false, fmt.Errorf("remote path too long (%d bytes, at most %d)", len(path), maxPathLen)
	}
	hostPart := spec
	if i := strings.LastIndexByte(spec, '@'); i >= 0 {
		login, hostPart = spec[:i], spec[i+1:]
		if err := validateLogin(login); err != nil {
			return "", "", "", false, fmt.Errorf("%q: %w (write ./%s for a local file)", s, err, s)
		}
	}
	if strings.HasPrefix(hostPart, "[") && strings.HasSuffix(hostPart, "]") {
		hostPart = hostPart[1 : len(hostPart)-1]
		if _, perr := netip.ParseAddr(hostPart); perr != nil || !strings.Contains(hostPart, ":") {
			return "", "", "", false, fmt.Errorf("%q: %q in brackets is not an IPv6 address", s, hostPart)
		}
	}
	if err := validateHost(hostPart); err != nil {
		return "", "", "", false, fmt.Errorf("%q: %w (write ./%s for a local file)", s, err, s)
	}
	return login, hostPart, path, true, nil
}

// remoteSep returns the index of the ':' separating host from path, or -1 if
// s is a local path. It follows OpenSSH's colon(): brackets protect IPv6
// colons, and a '/' before any ':' makes the argument local.
func remoteSep(s string) int {
	if s[0] == ':' {
		return -1
	}
	inBrackets := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '@' && i+1 < len(s) && s[i+1] == '[':
			inBrackets = true
		case c == '[' && i == 0:
			inBrackets = true
		case c == ']' && inBrackets && i+1 < len(s) && s[i+1] == ':':
			return i + 1
		case c == ':' && !inBrackets:
			return i
		case c == '/':
			return -1
		}
	}
	return -1
}

// splitHostPort splits "host", "host:port", "[v6]", "[v6]:port" or a bare
// IPv6 address.
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", errors.New("missing ']' after IPv6 address")
		}
		host, rest := s[1:end], s[end+1:]
		if a, perr := netip.ParseAddr(host); perr != nil || !a.Is6() {
			return "", "", fmt.Errorf("%q in brackets is not an IPv6 address", host)
		}
		switch {
		case rest == "":
			return host, "", nil
		case rest == ":":
			return "", "", errors.New("invalid port \"\" after ':'")
		case rest[0] == ':':
			return host, rest[1:], nil
		default:
			return "", "", fmt.Errorf("unexpected %q after ']'", rest)
		}
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, "", nil
	case 1:
		i := strings.IndexByte(s, ':')
		if i == len(s)-1 {
			return "", "", errors.New("invalid port \"\" after ':'")
		}
		return s[:i], s[i+1:], nil
	default:
		if a, perr := netip.ParseAddr(s); perr == nil && a.Is6() {
			return s, "", nil
		}
		return "", "", errors.New("too many ':' (write IPv6 addresses with a port as [addr]:port)")
	}
}

func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("invalid port %q", s)
		}
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q out of range 1-65535", s)
	}
	return p, nil
}

// validateLogin accepts the logins real systems use (including "DOMAIN\user"
// and "user@corp") but refuses what could be mistaken for an option or break
// a terminal or log line.
func validateLogin(login string) error {
	switch {
	case login == "":
		return errors.New("empty login before '@'")
	case len(login) > maxLoginLen:
		return fmt.Errorf("login too long (%d bytes, at most %d)", len(login), maxLoginLen)
	case login[0] == '-':
		return fmt.Errorf("login %q must not start with '-'", login)
	case !utf8.ValidString(login):
		return errors.New("login is not valid UTF-8")
	}
	for _, r := range login {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == ' ' || r == ':' || r == '/' {
			return fmt.Errorf("login %q contains %q", login, r)
		}
	}
	return nil
}

// validateHost accepts IP addresses and DNS-style names (letters, digits,
// '-', '_', '.'), as node names and hostnames are written.
func validateHost(host string) error {
	switch {
	case host == "":
		return errors.New("empty host")
	case len(host) > maxHostLen && strings.Contains(host, ":"):
		return errors.New("invalid IPv6 address")
	case len(host) > maxHostLen:
		return fmt.Errorf("host name too long (%d bytes, at most %d)", len(host), maxHostLen)
	}
	if strings.Contains(host, ":") {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return fmt.Errorf("invalid IPv6 address %q", host)
		}
		if z := a.Zone(); z != "" && !isHostChars(z) {
			return fmt.Errorf("invalid IPv6 zone in %q", host)
		}
		return nil
	}
	if host[0] == '-' || host[0] == '.' {
		return fmt.Errorf("host %q must not start with %q", host, host[0])
	}
	if !isHostChars(host) {
		return fmt.Errorf("host %q contains characters other than letters, digits, '-', '_' and '.'", host)
	}
	if strings.Contains(host, "..") {
		return fmt.Errorf("host %q has an empty label", host)
	}
	return nil
}

func isHostChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}
