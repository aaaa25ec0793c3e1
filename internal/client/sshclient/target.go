package sshclient

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/warden-sh/warden/internal/target"
)

// Bounds on user input. They are generous for real use and keep hostile input
// (a megabyte-long "hostname") from travelling further into the program.
const (
	maxTargetLen = 1024
	maxHostLen   = 253 // longest DNS name
	maxPathLen   = 4096
)

// ParseCopyArg tells an scp-style remote argument "TARGET:path" from a local
// path. TARGET is the one target grammar (target.Parse): [login@]node or
// [login@]key=value, a label that must name one node. Like scp, an argument
// is local when it has no ':' or when a '/' comes before the first ':'
// ("./a:b", "/tmp/x:y"), or when it starts with ':'. An empty remote path
// ("node:") means the remote home directory. For a local argument, path
// is s.
func ParseCopyArg(s string) (t target.Target, path string, isRemote bool, err error) {
	if s == "" {
		return t, "", false, errors.New("empty path")
	}
	if len(s) > maxTargetLen+maxPathLen {
		return t, "", false, fmt.Errorf("argument too long (%d bytes)", len(s))
	}
	if strings.IndexByte(s, 0) >= 0 {
		return t, "", false, errors.New("path contains a NUL byte")
	}
	sep := remoteSep(s)
	if sep < 0 {
		if len(s) > maxPathLen {
			return t, "", false, fmt.Errorf("local path too long (%d bytes, at most %d)", len(s), maxPathLen)
		}
		return t, s, false, nil
	}
	spec, path := s[:sep], s[sep+1:]
	if len(path) > maxPathLen {
		return t, "", false, fmt.Errorf("remote path too long (%d bytes, at most %d)", len(path), maxPathLen)
	}
	if t, err = target.Parse(spec); err != nil {
		return target.Target{}, "", false, fmt.Errorf("%q: %w (write ./%s for a local file)", s, err, s)
	}
	if strings.HasPrefix(t.String(), "-") {
		// An option, mistyped or smuggled; OpenSSH refuses such hosts too.
		return target.Target{}, "", false, fmt.Errorf("%q: %q must not start with '-' (write ./%s for a local file)", s, t.String(), s)
	}
	return t, path, true, nil
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
