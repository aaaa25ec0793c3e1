// Package target is the one grammar for what a user asks to reach:
// [login@]node[:port] or [login@]key=value[:port], where node is a node's
// name, hostname or id and key=value a label that must match exactly one
// node. The CLI (warden ssh, warden join) and the proxy (ssh -J,
// warden proxy ssh, data connections) parse and match targets here only.
package target

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/warden-sh/warden/internal/wire"
)

// Target is what a user asked to reach: a node by name, id, or a label
// (key=value) that must match exactly one node, and the login if given.
type Target struct {
	// Login is the part before the last '@' (Parse only; empty if none).
	Login string
	// Node is a name or id; empty when Label is set.
	Node string
	// LabelKey/LabelValue select by label.
	LabelKey, LabelValue string
	Port                 int
}

const maxTargetLen = 512

// Parse parses a target with an optional login: "login@" followed by what
// ParseHost reads. The login is everything before the last '@' (as OpenSSH
// does), so "user@corp@web1" has the login "user@corp".
func Parse(s string) (Target, error) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return ParseHost(s)
	}
	login := s[:i]
	if err := validateLogin(login); err != nil {
		return Target{}, fmt.Errorf("target %q: %w", s, err)
	}
	t, err := ParseHost(s[i+1:])
	t.Login = login
	return t, err
}

// validateLogin refuses what could be mistaken for an option or break a
// terminal or log line.
func validateLogin(login string) error {
	switch {
	case login == "":
		return errors.New("empty login before '@'")
	case len(login) > maxTargetLen:
		return fmt.Errorf("login is longer than %d bytes", maxTargetLen)
	case login[0] == '-':
		return fmt.Errorf("login %q must not start with '-'", login)
	case !utf8.ValidString(login):
		return errors.New("login is not valid UTF-8")
	}
	for _, r := range login {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == ' ' || r == ':' || r == '/' {
			return fmt.Errorf("login %q has a character that is not allowed", login)
		}
	}
	return nil
}

// ParseHost parses "node", "node:port", "key=value" or "key=value:port"
// as received in a direct-tcpip request or a `warden proxy ssh` argument.
// Hostile input: bounded, no control characters.
func ParseHost(s string) (Target, error) {
	var t Target
	if s == "" {
		return t, errors.New("empty target")
	}
	if len(s) > maxTargetLen {
		return t, fmt.Errorf("target is longer than %d bytes", maxTargetLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == ' ' || r == '@' || r == '/' {
			return t, fmt.Errorf("target %q has a character that is not allowed", s)
		}
	}
	host := s
	if h, p, err := net.SplitHostPort(s); err == nil {
		port, err := strconv.Atoi(p)
		if err != nil || port < 0 || port > 65535 {
			return t, fmt.Errorf("target %q has a bad port", s)
		}
		host, t.Port = h, port
	} else if strings.Count(s, ":") == 1 {
		return t, fmt.Errorf("target %q has a bad port", s)
	}
	if host == "" {
		return t, errors.New("empty target")
	}
	// A colon left in the host is an IPv6 address's ("[::1]:22") or an
	// error: names, ids and labels have none, and String must read back.
	if strings.Contains(host, ":") && net.ParseIP(host) == nil {
		return t, fmt.Errorf("target %q is not a node name, id, label or address", s)
	}
	if k, v, ok := strings.Cut(host, "="); ok {
		if k == "" || v == "" || strings.Contains(v, "=") {
			return t, fmt.Errorf("label target %q must look like key=value", host)
		}
		t.LabelKey, t.LabelValue = k, v
		return t, nil
	}
	t.Node = host
	return t, nil
}

// Match returns the nodes among nodes that t names: the node whose id is
// t.Node alone, else every node whose name or hostname is t.Node, or every
// node with the label. A caller uses exactly one match.
func (t Target) Match(nodes []wire.Node) []wire.Node {
	var matches []wire.Node
	for _, n := range nodes {
		switch {
		case t.LabelKey != "":
			if v, ok := n.Labels[t.LabelKey]; ok && v == t.LabelValue {
				matches = append(matches, n)
			}
		case n.ID == t.Node:
			return []wire.Node{n}
		case n.Name == t.Node || n.Hostname == t.Node:
			matches = append(matches, n)
		}
	}
	return matches
}

// String renders the target's host part as the user wrote it (without the
// login and port).
func (t Target) String() string {
	if t.LabelKey != "" {
		return t.LabelKey + "=" + t.LabelValue
	}
	return t.Node
}
