package proxy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Target is what a user asked the proxy to reach: a node by name, id, or a
// label (key=value) that must match exactly one node.
type Target struct {
	// Node is a name or id; empty when Label is set.
	Node string
	// LabelKey/LabelValue select by label.
	LabelKey, LabelValue string
	Port                 int
}

const maxTargetLen = 512

// ParseTarget parses "node", "node:port", "key=value" or "key=value:port"
// as received in a direct-tcpip request or a `warden proxy ssh` argument.
// Hostile input: bounded, no control characters.
func ParseTarget(s string) (Target, error) {
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

// String renders the target as the user wrote it (without the port).
func (t Target) String() string {
	if t.LabelKey != "" {
		return t.LabelKey + "=" + t.LabelValue
	}
	return t.Node
}
