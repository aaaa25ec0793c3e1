package ca

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ExtSessionMFA marks a per-session MFA certificate: issued after a fresh
// MFA check, for the nodes it names only, valid for at most MaxSessions
// sessions in all, ending by until (a JSON object
// {"nodes":[ids],"max_sessions":n,"until":unix}). A node
// or proxy that requires per-session MFA accepts only certificates with it.
const ExtSessionMFA = "session-mfa@warden.dev"

// Bounds of a session MFA mark.
const (
	maxSessionMFANodes    = 100
	maxSessionMFASessions = 100
)

// SessionMFA is the mark of a per-session MFA certificate.
type SessionMFA struct {
	Nodes       []string `json:"nodes"`
	MaxSessions int      `json:"max_sessions"`
	// Until (unix seconds, 0: unset) is when the sessions it opens end at
	// the latest: the login certificate's expiry, which a per-session
	// check must not extend.
	Until int64 `json:"until,omitempty"`
}

func (m *SessionMFA) validate() error {
	if len(m.Nodes) == 0 || len(m.Nodes) > maxSessionMFANodes {
		return fmt.Errorf("session MFA: %d nodes, want 1 to %d", len(m.Nodes), maxSessionMFANodes)
	}
	for _, n := range m.Nodes {
		if err := validateID(n); err != nil {
			return fmt.Errorf("session MFA node: %w", err)
		}
	}
	if m.Until < 0 {
		return errors.New("session MFA: negative until")
	}
	if m.MaxSessions < 1 || m.MaxSessions > maxSessionMFASessions {
		return fmt.Errorf("session MFA: max_sessions %d, want 1 to %d", m.MaxSessions, maxSessionMFASessions)
	}
	return nil
}

// decodeSessionMFA reads ExtSessionMFA's value, strictly.
func decodeSessionMFA(v string) (*SessionMFA, error) {
	if len(v) > MaxExtensionLen {
		return nil, errors.New("too long")
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(v)))
	dec.DisallowUnknownFields()
	var m SessionMFA
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}
