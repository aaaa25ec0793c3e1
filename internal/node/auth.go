package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"golang.org/x/crypto/ssh"
)

// authInfoKey keys the authentication result in ssh.Permissions.ExtraData.
type authInfoKey struct{}

// authInfo is what a successful authentication established.
type authInfo struct {
	cert    *ssh.Certificate
	login   string
	perms   Permissions
	user    *osUser
	expires time.Time // zero: never
}

// serverConfig builds the per-connection ssh.ServerConfig; its callbacks
// capture ctx so that authorization and audit are tied to the connection.
func (s *Server) serverConfig(ctx context.Context) *ssh.ServerConfig {
	checker := &ssh.CertChecker{
		IsUserAuthority: s.isUserAuthority,
		Clock:           s.cfg.Now,
	}
	cfg := &ssh.ServerConfig{
		MaxAuthTries:  s.cfg.MaxAuthTries,
		ServerVersion: "SSH-2.0-Warden",
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			return s.checkKey(ctx, checker, meta, key)
		},
		VerifiedPublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey, p *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			return s.authorize(ctx, meta, key, p)
		},
	}
	// Host keys were checked in New.
	_ = ca.ServerConfig(cfg, s.cfg.HostSigners...)
	return cfg
}

func (s *Server) isUserAuthority(k ssh.PublicKey) bool {
	b := k.Marshal()
	for _, ca := range s.cfg.UserCAs() {
		if ca != nil && bytes.Equal(ca.Marshal(), b) {
			return true
		}
	}
	return false
}

// checkKey is the PublicKeyCallback. It also runs for key probes, so its
// only side effect is an audit event on denial.
func (s *Server) checkKey(ctx context.Context, checker *ssh.CertChecker, meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		s.denied(ctx, meta, nil, "plain public key offered; only certificates are accepted")
		return nil, errors.New("node: only user certificates are accepted")
	}
	if _, err := checker.Authenticate(meta, cert); err != nil {
		reason := certRejectReason(cert, meta.User(), err)
		s.denied(ctx, meta, cert, err.Error())
		return nil, &ssh.BannerError{Err: err, Message: "warden: " + reason + "\n"}
	}
	// Return our own Permissions (not the certificate's map) carrying the
	// critical options so x/crypto enforces source-address.
	return &ssh.Permissions{
		CriticalOptions: maps.Clone(cert.CriticalOptions),
		Extensions:      maps.Clone(cert.Extensions),
	}, nil
}

// certRejectReason is the user-facing reason for a rejected certificate.
func certRejectReason(cert *ssh.Certificate, login string, err error) string {
	msg := err.Error()
	switch {
	case cert.CertType != ssh.UserCert:
		return "the certificate is not a user certificate"
	case strings.Contains(msg, "unrecognized authority"):
		return "the certificate is not signed by a trusted Warden authority"
	case strings.Contains(msg, "has expired"):
		return "your certificate has expired; log in again"
	case strings.Contains(msg, "not yet valid"):
		return "your certificate is not valid yet (check the clock)"
	case strings.Contains(msg, "principal"):
		return fmt.Sprintf("login %q is not allowed by your roles, so your certificate does not allow it (log in again if your roles changed)", login)
	case strings.Contains(msg, "critical option"):
		return "the certificate has an unsupported critical option"
	default:
		return "the certificate was rejected"
	}
}

// authorize runs after the client proved possession of the certificate's
// key: it asks the Authorizer and resolves the OS account.
func (s *Server) authorize(ctx context.Context, meta ssh.ConnMetadata, key ssh.PublicKey, p *ssh.Permissions) (*ssh.Permissions, error) {
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return nil, errors.New("node: only user certificates are accepted")
	}
	login := meta.User()
	join := login == ca.InternalPrincipalPrefix+cert.KeyId
	actx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	perms, err := s.cfg.Authorizer.Authorize(actx, AuthzRequest{Cert: cert, Login: login, RemoteAddr: meta.RemoteAddr(), Join: join})
	if err == nil && perms == nil {
		err = errors.New("access denied")
	}
	if err != nil {
		s.denied(ctx, meta, cert, err.Error())
		return nil, &ssh.BannerError{Err: err, Message: "warden: access denied: " + err.Error() + "\n"}
	}
	var u *osUser
	if join {
		// Joining needs no OS account, and grants nothing else.
		*perms = Permissions{User: perms.User, Roles: perms.Roles, Expires: perms.Expires, JoinOnly: true}
	} else if u, err = s.resolveLogin(ctx, login); err != nil {
		s.denied(ctx, meta, cert, err.Error())
		return nil, &ssh.BannerError{Err: err, Message: "warden: " + err.Error() + "\n"}
	}
	ai := &authInfo{cert: cert, login: login, perms: *perms, user: u, expires: perms.Expires}
	if ai.perms.User == "" {
		ai.perms.User = cert.KeyId
	}
	if !perms.KeepAfterCertExpiry && cert.ValidBefore != ssh.CertTimeInfinity && cert.ValidBefore < 1<<63 {
		certEnd := time.Unix(int64(cert.ValidBefore), 0)
		if ai.expires.IsZero() || certEnd.Before(ai.expires) {
			ai.expires = certEnd
		}
	}
	if p == nil {
		p = &ssh.Permissions{}
	}
	p.ExtraData = map[any]any{authInfoKey{}: ai}
	return p, nil
}

// denied audits a refused authentication attempt.
func (s *Server) denied(ctx context.Context, meta ssh.ConnMetadata, cert *ssh.Certificate, reason string) {
	ev := audit.Event{
		Event:      audit.AuthAttempt,
		Login:      meta.User(),
		RemoteAddr: addrString(meta.RemoteAddr()),
		Success:    false,
		Error:      reason,
	}
	if cert != nil {
		ev.User = cert.KeyId
		ev.Fields = map[string]any{"cert_serial": cert.Serial}
	}
	s.emit(ctx, ev)
	s.log.Info("authentication refused", slog.String("login", ev.Login), slog.String("user", ev.User),
		slog.String("remote_addr", ev.RemoteAddr), slog.String("reason", reason))
}
