// Package sshclient is the SSH client side of the warden CLI: it dials a node
// with the user's certificate, verifies the node's host certificate against
// the cluster's host CAs (no trust on first use, ever), runs commands and
// interactive shells, and copies files over SFTP like scp.
package sshclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/ca"
)

// Errors that Dial's errors match with errors.Is, so callers can tell the
// user what to do (log in again, ask for access, check the network).
var (
	ErrPermissionDenied = errors.New("permission denied")
	ErrUntrustedHost    = errors.New("untrusted host")
	ErrUnreachable      = errors.New("host not reachable")
)

const (
	defaultTimeout           = 30 * time.Second
	defaultKeepaliveInterval = 30 * time.Second
	keepaliveMaxMissed       = 3
	maxBannerLen             = 2048
)

// Config says where to connect and with which credentials.
type Config struct {
	User     string          // OS login
	Addr     string          // host:port to dial
	Signer   ssh.Signer      // certificate signer (ssh.NewCertSigner of the user's key + cert)
	HostCAs  []ssh.PublicKey // trusted host CAs: the server must present a host cert signed by one of them
	HostName string          // the principal the host cert must carry; empty = any principal (the cert must still be CA-signed)
	// Dial opens the transport; nil means a plain TCP dial. Proxy tunnels
	// plug in here.
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Timeout time.Duration // for connecting and the SSH handshake; 0 means 30s
	// KeepaliveInterval is how often keepalive@openssh.com is sent; after
	// three unanswered ones the connection is closed. 0 means 30s, < 0 off.
	KeepaliveInterval time.Duration
	Now               func() time.Time // clock for certificate validity; nil means time.Now
}

func (c Config) validate() error {
	switch {
	case c.User == "":
		return errors.New("no login given")
	case c.Addr == "":
		return errors.New("no address to dial")
	case c.Signer == nil:
		return errors.New("no certificate: log in first")
	case len(c.HostCAs) == 0:
		return errors.New("no trusted host CA: log in first to fetch the cluster's host CA")
	}
	return nil
}

// dialError is an error with a user-facing message that still matches one of
// the Err* kinds.
type dialError struct {
	kind error
	msg  string
}

func (e *dialError) Error() string        { return e.msg }
func (e *dialError) Is(target error) bool { return target == e.kind }

// Dial connects to cfg.Addr, verifies the host certificate and authenticates
// with cfg.Signer. The client sends keepalives until it is closed.
func Dial(ctx context.Context, cfg Config) (*ssh.Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	display := cfg.HostName
	if display == "" {
		display = cfg.Addr
	}

	dialCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(dialCtx, "tcp", cfg.Addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to %s: %w", display, ctx.Err())
		}
		return nil, &dialError{kind: ErrUnreachable, msg: fmt.Sprintf("cannot reach %s: %v", display, shortNetError(err))}
	}

	var (
		mu      sync.Mutex
		hostErr error
		banner  string
	)
	hostKeyCheck := hostKeyCallback(cfg, display)
	clientCfg := &ssh.ClientConfig{
		User: cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback: func(addr string, remote net.Addr, key ssh.PublicKey) error {
			err := hostKeyCheck(addr, remote, key)
			mu.Lock()
			hostErr = err
			mu.Unlock()
			return err
		},
		BannerCallback: func(msg string) error {
			mu.Lock()
			banner += msg
			mu.Unlock()
			return nil
		},
		ClientVersion: "SSH-2.0-warden",
		Timeout:       timeout,
	}
	// Host key algorithms: certificates first (ca.HostKeyAlgorithms).
	ca.ClientConfig(clientCfg)

	// The handshake has no context parameter: bound it with a deadline and
	// close the connection if ctx ends first.
	if dl, ok := dialCtx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(dialCtx, func() { conn.Close() })
	sconn, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, clientCfg)
	stopped := stop()
	if err != nil {
		conn.Close()
		mu.Lock()
		defer mu.Unlock()
		switch {
		case hostErr != nil:
			return nil, hostErr
		case ctx.Err() != nil:
			return nil, fmt.Errorf("connect to %s: %w", display, ctx.Err())
		case !stopped || isTimeout(err):
			return nil, &dialError{kind: ErrUnreachable, msg: fmt.Sprintf("connect to %s: timed out during the SSH handshake", display)}
		case strings.Contains(err.Error(), "unable to authenticate"):
			msg := fmt.Sprintf("permission denied: %s refused the certificate for login %q", display, cfg.User)
			if b := cleanBanner(banner); b != "" {
				msg += "; the server said: " + b
			}
			return nil, &dialError{kind: ErrPermissionDenied, msg: msg}
		default:
			return nil, fmt.Errorf("ssh handshake with %s: %w", display, err)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	client := ssh.NewClient(sconn, chans, reqs)
	interval := cfg.KeepaliveInterval
	if interval == 0 {
		interval = defaultKeepaliveInterval
	}
	if interval > 0 {
		go keepalive(client, interval)
	}
	return client, nil
}

// hostKeyCallback accepts only host certificates signed by one of cfg.HostCAs,
// currently valid, and (when cfg.HostName is set) issued for that name.
func hostKeyCallback(cfg Config, display string) ssh.HostKeyCallback {
	cas := make([][]byte, len(cfg.HostCAs))
	for i, k := range cfg.HostCAs {
		cas[i] = k.Marshal()
	}
	untrusted := &dialError{kind: ErrUntrustedHost, msg: fmt.Sprintf("host key for %s is not signed by the cluster's host CA", display)}
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		cert, ok := key.(*ssh.Certificate)
		if !ok || cert.CertType != ssh.HostCert {
			return untrusted
		}
		signer := cert.SignatureKey.Marshal()
		trusted := false
		for _, ca := range cas {
			if bytes.Equal(ca, signer) {
				trusted = true
				break
			}
		}
		if !trusted {
			return untrusted
		}
		principal := cfg.HostName
		if principal == "" && len(cert.ValidPrincipals) > 0 {
			principal = cert.ValidPrincipals[0] // any principal will do
		}
		checker := &ssh.CertChecker{Clock: cfg.Now}
		if err := checker.CheckCert(principal, cert); err != nil {
			reason := strings.TrimPrefix(err.Error(), "ssh: ")
			if cfg.HostName != "" && len(cert.ValidPrincipals) > 0 && !containsString(cert.ValidPrincipals, cfg.HostName) {
				reason = "it is issued for other names"
			}
			return &dialError{kind: ErrUntrustedHost, msg: fmt.Sprintf("host certificate of %s is not valid: %s", display, reason)}
		}
		return nil
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// keepalive sends keepalive@openssh.com every interval and closes the client
// once keepaliveMaxMissed of them went unanswered, so a dead peer or network
// is noticed instead of hanging forever. It returns when the client closes.
func keepalive(client *ssh.Client, interval time.Duration) {
	done := make(chan struct{})
	go func() {
		_ = client.Wait()
		close(done)
	}()
	replies := make(chan struct{}, 1)
	inFlight, missed := false, 0
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-replies:
			inFlight, missed = false, 0
		case <-t.C:
			if inFlight {
				missed++
				if missed >= keepaliveMaxMissed {
					client.Close()
					<-done
					return
				}
				continue
			}
			inFlight = true
			go func() {
				// Any reply, even "unsupported request", proves the peer is alive.
				if _, _, err := client.SendRequest("keepalive@openssh.com", true, nil); err == nil {
					replies <- struct{}{}
				}
			}()
		}
	}
}

// cleanBanner makes a server banner safe to print: no control characters (a
// hostile server must not drive the user's terminal), bounded length.
func cleanBanner(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return ' '
		case unicode.IsControl(r) || r == unicode.ReplacementChar:
			return -1
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxBannerLen {
		s = strings.ToValidUTF8(s[:maxBannerLen], "") + "..."
	}
	return s
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// shortNetError drops the "dial tcp 127.0.0.1:22:" prefix the user already
// knows from the message around it.
func shortNetError(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}
