package policy

import (
	"fmt"
	"slices"
	"time"
)

// Per-session MFA bounds.
const (
	// SessionMFATTL is how long a per-session certificate is valid.
	SessionMFATTL = time.Minute
	// MaxSessionMFAWindow bounds session_mfa_window.
	MaxSessionMFAWindow = 10 * time.Minute
	// MaxSessionMFASessions bounds session_mfa_max_sessions.
	MaxSessionMFASessions = 100
	// MaxSessionMFANodes bounds the nodes one batch check names.
	MaxSessionMFANodes = 100
)

// SessionMFARequired reports whether a new session to the node t needs a
// fresh MFA check: the cluster requires it everywhere (cluster), or one of
// the roles with require_session_mfa covers the node (its allow.node_labels
// select it; a role without node_labels covers every node). It is the one
// decision the node, the proxy and auth each make.
func SessionMFARequired(roles []*Role, traits map[string][]string, t Target, cluster bool) bool {
	if cluster {
		return true
	}
	for _, r := range roles {
		if r == nil || r.Spec.Options.RequireSessionMFA == nil || !*r.Spec.Options.RequireSessionMFA {
			continue
		}
		if len(r.Spec.Allow.NodeLabels) == 0 || matchLabels(r.Spec.Allow.NodeLabels, traits, t.Labels) {
			return true
		}
	}
	return false
}

// SessionMFABatch is what the user's roles allow one check to cover:
// Window zero means one session to one node, for SessionMFATTL.
type SessionMFABatch struct {
	Window      time.Duration
	MaxSessions int
}

// SessionMFABatchOf merges the roles' batch options: the shortest window
// and the fewest sessions of the roles that set them, and no batch at all
// if a role requiring session MFA sets none (the strictest wins).
func SessionMFABatchOf(roles []*Role) SessionMFABatch {
	var b SessionMFABatch
	for _, r := range roles {
		if r == nil {
			continue
		}
		o := r.Spec.Options
		w := time.Duration(o.SessionMFAWindow)
		if w == 0 {
			if o.RequireSessionMFA != nil && *o.RequireSessionMFA {
				return SessionMFABatch{}
			}
			continue
		}
		if b.Window == 0 || w < b.Window {
			b.Window = w
		}
		if o.SessionMFAMaxSessions > 0 && (b.MaxSessions == 0 || o.SessionMFAMaxSessions < b.MaxSessions) {
			b.MaxSessions = o.SessionMFAMaxSessions
		}
	}
	return b
}

// SessionMFAMark is what a per-session certificate carries: the node ids
// it may open sessions to, and how many sessions in all.
type SessionMFAMark struct {
	Nodes       []string `json:"nodes"`
	MaxSessions int      `json:"max_sessions"`
}

// CodeSessionMFARequired is the DeniedError code of a session refused for
// want of a per-session MFA check (one a check would lift).
const CodeSessionMFARequired = "session-mfa-required"

// CheckSessionMFA decides a session to the node nodeID (called node for
// the user) given whether it needs per-session MFA and the certificate's
// mark (nil: a certificate from login). A refusal says how to comply.
func CheckSessionMFA(required bool, mark *SessionMFAMark, nodeID, node string) error {
	if mark == nil {
		if !required {
			return nil
		}
		return &DeniedError{
			Reason: fmt.Sprintf("node %q requires an MFA check for each session: connect with `warden ssh` (it asks for your code), "+
				"or with ssh through the ProxyCommand from `warden config ssh` on a terminal (or with WARDEN_MFA_CODE / --mfa-code-file)", node),
			Detail: "session MFA required; certificate without a per-session MFA mark",
			Code:   CodeSessionMFARequired,
		}
	}
	if !slices.Contains(mark.Nodes, nodeID) {
		return &DeniedError{
			Reason: fmt.Sprintf("your per-session MFA certificate is not for node %q; connect again to make a check for it", node),
			Detail: fmt.Sprintf("per-session certificate for nodes %v", mark.Nodes),
		}
	}
	return nil
}
