package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage"
)

// webSessionPrefix holds the web UI's browser sessions, keyed by the
// SHA-256 of the cookie value (never the value itself).
const webSessionPrefix = "/web_sessions/"

// validSessionKey reports whether k is a hex SHA-256.
func validSessionKey(k string) bool {
	if len(k) != 64 {
		return false
	}
	_, err := hex.DecodeString(k)
	return err == nil
}

// PutWebSession stores a browser session of the web UI under key (the
// hex SHA-256 of its cookie value) until expires. The value is the web
// UI's, sealed by it with a key only the cookie gives.
func (s *Server) PutWebSession(ctx context.Context, key string, value []byte, expires time.Time) error {
	if !validSessionKey(key) || expires.IsZero() {
		return badRequest("invalid web session")
	}
	_, err := s.b.Create(ctx, storage.Item{Key: webSessionPrefix + key, Value: value, Expires: expires})
	return err
}

// GetWebSession returns a live browser session's value (storage.ErrNotFound
// if it ended or expired).
func (s *Server) GetWebSession(ctx context.Context, key string) ([]byte, error) {
	if !validSessionKey(key) {
		return nil, storage.ErrNotFound
	}
	it, err := s.b.Get(ctx, webSessionPrefix+key)
	if err != nil {
		return nil, err
	}
	if !it.Expires.IsZero() && !s.now().Before(it.Expires) {
		return nil, storage.ErrNotFound
	}
	return it.Value, nil
}

// DeleteWebSession ends a browser session (no error if it is gone).
func (s *Server) DeleteWebSession(ctx context.Context, key string) error {
	if !validSessionKey(key) {
		return nil
	}
	if err := s.b.Delete(ctx, webSessionPrefix+key); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("delete web session: %w", err)
	}
	return nil
}

// RecordWebLogout audits a sign-out from the web UI; session is a short
// tag of the session (not its cookie value).
func (s *Server) RecordWebLogout(ctx context.Context, c Caller, session, remoteAddr string) {
	if s.authorize(c, "RecordWebLogout") != nil {
		return // only a person signs out of the web UI
	}
	s.emit(ctx, audit.Event{Event: audit.UserLogout, User: c.User, RemoteAddr: remoteAddr, Success: true,
		Fields: map[string]any{"via": "web", "session": session}})
}

// WebTerminalResume is a web terminal's page coming back after its socket
// dropped (a network blip): the browser session (its tag), the terminal's
// node and login (unknown when the token named none), where the page
// resumed from, how long the terminal had no page, and Error if refused.
type WebTerminalResume struct {
	Session, Node, Login, RemoteAddr, Error string
	Offset                                  int64
	Away                                    time.Duration
}

// RecordWebTerminalResume audits a web terminal's resume
// (web.terminal_resume), refused or not.
func (s *Server) RecordWebTerminalResume(ctx context.Context, c Caller, r WebTerminalResume) {
	if s.authorize(c, "RecordWebTerminalResume") != nil {
		return // only a person's web terminal resumes
	}
	ev := audit.Event{Event: audit.WebTerminalResume, User: c.User, Node: r.Node, Login: r.Login, RemoteAddr: r.RemoteAddr,
		Success: r.Error == "", Error: r.Error, Fields: map[string]any{"via": "web", "session": r.Session, "offset": r.Offset}}
	if r.Away > 0 {
		ev.Fields["away_ms"] = r.Away.Milliseconds()
	}
	s.emit(ctx, ev)
}
