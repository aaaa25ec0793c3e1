package sshclient

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Forward is one local port forward (ssh -L): connections accepted on
// Listen are carried through the SSH connection to Target, which the node
// dials.
type Forward struct {
	Listen string // host:port on this machine
	Target string // host:port as the node sees it
}

// ParseLocalForward parses OpenSSH's -L form "[BIND_ADDRESS:]PORT:HOST:HOSTPORT"
// (IPv6 addresses in brackets). Without a bind address the forward listens
// on 127.0.0.1 only, as OpenSSH does by default. Port 0 for PORT picks a
// free port.
func ParseLocalForward(spec string) (Forward, error) {
	if len(spec) > maxTargetLen {
		return Forward{}, fmt.Errorf("forward too long (%d bytes, at most %d)", len(spec), maxTargetLen)
	}
	fields, err := splitForward(spec)
	if err != nil {
		return Forward{}, fmt.Errorf("forward %q: %w", spec, err)
	}
	bind := "127.0.0.1"
	switch len(fields) {
	case 3:
	case 4:
		bind, fields = fields[0], fields[1:]
		if bind == "*" || bind == "" {
			bind = "0.0.0.0"
		}
	default:
		return Forward{}, fmt.Errorf("forward %q: want [BIND_ADDRESS:]PORT:HOST:HOSTPORT", spec)
	}
	if fields[0] != "0" {
		if _, err := parsePort(fields[0]); err != nil {
			return Forward{}, fmt.Errorf("forward %q: local port: %w", spec, err)
		}
	}
	if err := validateHost(bind); err != nil {
		return Forward{}, fmt.Errorf("forward %q: bind address: %w", spec, err)
	}
	if err := validateHost(fields[1]); err != nil {
		return Forward{}, fmt.Errorf("forward %q: %w", spec, err)
	}
	if _, err := parsePort(fields[2]); err != nil {
		return Forward{}, fmt.Errorf("forward %q: remote port: %w", spec, err)
	}
	return Forward{Listen: net.JoinHostPort(bind, fields[0]), Target: net.JoinHostPort(fields[1], fields[2])}, nil
}

// splitForward splits s at the colons outside brackets, unbracketing
// fields. It stops after five fields: more is an error anyway.
func splitForward(s string) ([]string, error) {
	var fields []string
	for {
		var f string
		if strings.HasPrefix(s, "[") {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, errors.New("missing ']' after IPv6 address")
			}
			f, s = s[1:end], s[end+1:]
			if s != "" && s[0] != ':' {
				return nil, fmt.Errorf("unexpected %q after ']'", s)
			}
		} else if i := strings.IndexByte(s, ':'); i >= 0 {
			f, s = s[:i], s[i:]
		} else {
			f, s = s, ""
		}
		fields = append(fields, f)
		if s == "" || len(fields) > 4 {
			return fields, nil
		}
		s = s[1:] // the ':'
	}
}

// ServeLocalForward accepts connections on ln until it is closed and
// carries each through c to target, in both directions, passing on each
// side's end of input. A connection the node refuses (port forwarding not
// allowed by the user's roles, target unreachable) is closed, and why goes
// to errOut.
func ServeLocalForward(c *ssh.Client, ln net.Listener, target string, errOut io.Writer) {
	var mu sync.Mutex // errOut is shared by the forward's connections
	for {
		local, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer local.Close()
			remote, err := c.Dial("tcp", target)
			if err != nil {
				mu.Lock()
				fmt.Fprintf(errOut, "warden: forward %s -> %s: %v\n", ln.Addr(), target, err)
				mu.Unlock()
				return
			}
			defer remote.Close()
			var wg sync.WaitGroup
			wg.Go(func() {
				_, _ = io.Copy(remote, local)
				closeWrite(remote)
			})
			_, _ = io.Copy(local, remote)
			closeWrite(local)
			wg.Wait()
		}()
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
