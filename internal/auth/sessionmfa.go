package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// Per-session MFA (docs/session-mfa.md). A role with require_session_mfa
// (or the cluster's auth.require_session_mfa) makes a new session to the
// nodes it covers need a certificate marked ca.ExtSessionMFA, which only
// IssueSessionCert makes, after a fresh MFA check (VerifyMFA's checks):
// valid about a minute, for the one node and login asked for, used once.
// The node and the proxy each decide with policy.SessionMFARequired and
// policy.CheckSessionMFA; the proxy counts uses in storage
// (SpendSessionCert), the node in memory.

const prefixSessionMFAUses = "/session_mfa/uses/" // by certificate serial; TTL past its expiry

// SessionMFAQuery is wire.SessionMFAQuery: the API carries it.
type SessionMFAQuery = wire.SessionMFAQuery

// SessionCertRequest is wire.SessionCertRequest: the API carries it.
type SessionCertRequest = wire.SessionCertRequest

// sessionMFANodes resolves node ids among the live nodes and agentless servers, for the caller's
// roles: each must exist and allow login there.
func (s *Server) sessionMFANodes(ctx context.Context, c Caller, roles []*policy.Role, ids []string, login string) ([]Node, error) {
	if len(ids) == 0 || len(ids) > policy.MaxSessionMFANodes {
		return nil, badRequest("name 1 to %d nodes", policy.MaxSessionMFANodes)
	}
	if login == "" || len(login) > 256 {
		return nil, badRequest("a login is required")
	}
	// Agentless servers too: the proxy makes their per-session MFA check.
	live := append(s.liveNodes(), s.agentlessNodes(ctx)...)
	out := make([]Node, 0, len(ids))
	for _, id := range ids {
		i := slices.IndexFunc(live, func(n Node) bool { return n.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("%w: node %q is not connected", storage.ErrNotFound, id)
		}
		n := live[i]
		d := policy.Decide(policy.Request{Identity: policy.Identity{User: c.User, Roles: c.Roles, Traits: c.Traits}, Roles: roles,
			Target: policy.Target{Login: login, NodeName: n.Name, NodeID: n.ID, Labels: n.Labels}})
		if !d.Allowed {
			return nil, denied("%s", d.Reason)
		}
		if !slices.ContainsFunc(out, func(o Node) bool { return o.ID == n.ID }) {
			out = append(out, n)
		}
	}
	return out, nil
}

// SessionMFANeeded reports whether a session to the node needs a
// per-session MFA certificate, for the roles and traits given (the
// proxy's check; the node makes the same with policy.SessionMFARequired).
func (s *Server) SessionMFANeeded(roles []string, traits map[string][]string, n Node) bool {
	return policy.SessionMFARequired(s.roles.get(roles), traits, policy.Target{NodeName: n.Name, NodeID: n.ID, Labels: n.Labels}, s.cfg.RequireSessionMFA)
}

// SessionMFAStatus tells the caller whether sessions as login to the nodes
// need a per-session MFA check, and how large a batch one check may cover.
func (s *Server) SessionMFAStatus(ctx context.Context, c Caller, q SessionMFAQuery) (*wire.SessionMFAStatus, error) {
	if err := s.authorize(c, "SessionMFAStatus"); err != nil {
		return nil, err
	}
	roles := s.roles.get(c.Roles)
	nodes, err := s.sessionMFANodes(ctx, c, roles, q.Nodes, q.Login)
	if err != nil {
		return nil, err
	}
	out := &wire.SessionMFAStatus{}
	for _, n := range nodes {
		if s.SessionMFANeeded(c.Roles, c.Traits, n) {
			out.Required = true
		}
	}
	if !out.Required {
		return out, nil
	}
	b := policy.SessionMFABatchOf(roles)
	out.Window, out.MaxSessions = b.Window, b.MaxSessions
	if u, _, err := s.localUser(ctx, c.User); err == nil {
		out.TOTP = u.Count(identity.DeviceTOTP, false) > 0
		out.WebAuthn = u.Count(identity.DeviceWebAuthn, false) > 0
	}
	return out, nil
}

// IssueSessionCert checks a fresh MFA response of the caller (VerifyMFA's
// checks, audited as mfa.verify with purpose "session") and issues a
// per-session certificate: for req.Login on the nodes named, valid
// policy.SessionMFATTL for one session to one node, or, where every role
// allows a batch (session_mfa_window), for the window and the sessions
// asked (bounded by session_mfa_max_sessions).
func (s *Server) IssueSessionCert(ctx context.Context, c Caller, req SessionCertRequest) (*wire.SessionCert, error) {
	if err := s.authorize(c, "IssueSessionCert"); err != nil {
		return nil, err
	}
	issued := s.now()
	if len(req.PublicKey) > 16<<10 {
		return nil, badRequest("oversized public key")
	}
	pub, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	roles := s.roles.get(c.Roles)
	nodes, err := s.sessionMFANodes(ctx, c, roles, req.Nodes, req.Login)
	if err != nil {
		return nil, err
	}
	ttl, uses := policy.SessionMFATTL, 1
	if b := policy.SessionMFABatchOf(roles); b.Window > 0 {
		ttl = b.Window
		uses = req.Sessions
		if uses <= 0 {
			uses = len(nodes)
		}
		if b.MaxSessions > 0 && uses > b.MaxSessions {
			return nil, denied("your roles let one MFA check cover at most %d sessions (session_mfa_max_sessions); you asked for %d", b.MaxSessions, uses)
		}
		if uses > policy.MaxSessionMFASessions {
			return nil, badRequest("at most %d sessions", policy.MaxSessionMFASessions)
		}
	} else if len(nodes) > 1 || req.Sessions > 1 {
		return nil, denied("your roles require an MFA check for each session: ask for one node and one session (no role allows a batch with session_mfa_window)")
	}
	v, err := s.verifyMFA(ctx, c.User, req.MFA, false, "session")
	if err != nil {
		return nil, err
	}
	sub := c.LockSubject()
	sub.MFADevices = []string{v.Device}
	if err := s.CheckLock(sub); err != nil {
		return nil, err
	}
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	opts := policy.MergeOptions(roles)
	cert, err := s.ca.IssueUser(ca.UserCertRequest{
		PublicKey: pub, Username: c.User, Principals: []string{req.Login, internalPrincipal(c.User)}, Roles: c.Roles, Traits: c.Traits,
		RequestIDs: c.RequestIDs, Issued: issued, MFADevice: v.Device, TTL: ttl,
		SessionMFA: &ca.SessionMFA{Nodes: ids, MaxSessions: uses, Until: sessionsUntil(c)},
		PermitPTY:  opts.PermitPTY, PermitPortForwarding: opts.PortForwarding, PermitAgentForwarding: opts.ForwardAgent,
	})
	if err != nil {
		return nil, fmt.Errorf("issue per-session certificate: %w", err)
	}
	expires := time.Unix(int64(cert.ValidBefore), 0).UTC()
	s.emit(ctx, audit.Event{Event: audit.CertIssued, User: c.User, Success: true,
		Fields: map[string]any{"cert_type": "session_mfa", "serial": fmt.Sprint(cert.Serial), "principals": []string{req.Login},
			"nodes": ids, "max_sessions": uses, "ttl": ttl.String(), "expires": expires, "issued": issued.UTC(),
			"mfa_device": v.Device, "mfa_kind": v.Kind, "access_requests": c.RequestIDs}})
	return &wire.SessionCert{SSHCert: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))), Expires: expires, Device: v.Device, MaxSessions: uses}, nil
}

// sessionsUntil is when the sessions of a per-session certificate end at
// the latest: when the caller's login certificate expires (zero: unset).
func sessionsUntil(c Caller) int64 {
	if c.Expires.IsZero() || c.Expires.Unix() < 0 {
		return 0
	}
	return c.Expires.Unix()
}

// errSessionCertSpent refuses a per-session certificate used up.
var errSessionCertSpent = errors.New("this per-session MFA certificate was already used; connect again to make a new MFA check")

// SpendSessionCert counts one use of the per-session certificate serial
// (the proxy calls it for every session it routes with one), refusing it
// beyond max uses. The count lives until after the certificate expires.
func (s *Server) SpendSessionCert(ctx context.Context, serial uint64, expires time.Time, max int) error {
	key := fmt.Sprintf("%s%d", prefixSessionMFAUses, serial)
	ttl := expires.Add(time.Minute)
	for range 16 {
		var used int
		rev, err := s.getJSONRev(ctx, key, &used)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			err = s.createJSON(ctx, key, 1, ttl)
			if errors.Is(err, storage.ErrAlreadyExists) {
				continue
			}
			return err
		case err != nil:
			return err
		}
		if used >= max {
			return errSessionCertSpent
		}
		err = s.casJSON(ctx, key, rev, used+1, ttl)
		if errors.Is(err, storage.ErrCompareFailed) {
			continue
		}
		return err
	}
	return errors.New("per-session certificate: too many concurrent uses")
}
