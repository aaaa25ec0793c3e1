package node

import (
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/policy"
)

// checkSessionMFA is per-session MFA at the node: policy.SessionMFARequired
// and policy.CheckSessionMFA (the decision the proxy makes too), then one
// use of a per-session certificate, counted here by serial until it
// expires. A per-session certificate is valid about a minute, but the
// session it opened is not cut then: it lasts until expires (its issue
// time plus the roles' max_session_ttl, and no later than the login
// certificate's expiry the mark carries), which is returned; zero for a
// certificate from login.
func (a *Access) checkSessionMFA(id *ca.CertIdentity, roles []*policy.Role, req AuthzRequest) (time.Time, error) {
	t := policy.Target{Login: req.Login, NodeName: a.cfg.NodeName, NodeID: a.cfg.NodeID, Labels: a.cfg.Labels()}
	required := policy.SessionMFARequired(roles, id.Traits, t, a.clusterSessionMFA.Load())
	var mark *policy.SessionMFAMark
	if id.SessionMFA != nil {
		mark = &policy.SessionMFAMark{Nodes: id.SessionMFA.Nodes, MaxSessions: id.SessionMFA.MaxSessions}
	}
	if err := policy.CheckSessionMFA(required, mark, a.cfg.NodeID, a.cfg.NodeName); err != nil {
		return time.Time{}, err
	}
	if mark == nil {
		return time.Time{}, nil
	}
	if !a.uses.spend(req.Cert.Serial, id.Expires, mark.MaxSessions, time.Now()) {
		return time.Time{}, &policy.DeniedError{
			Reason: "this per-session MFA certificate was already used; connect again to make a new MFA check",
			Detail: "per-session certificate reused"}
	}
	ttl := policy.MergeOptions(roles).MaxSessionTTL
	if ttl <= 0 {
		ttl = policy.DefaultSessionTTL
	}
	end := id.Issued.Add(ttl)
	if u := id.SessionMFA.Until; u > 0 && time.Unix(u, 0).Before(end) {
		end = time.Unix(u, 0)
	}
	return end, nil
}

// SetRequireSessionMFA sets the cluster's auth.require_session_mfa, as the
// feed's snapshot carries it.
func (a *Access) SetRequireSessionMFA(on bool) { a.clusterSessionMFA.Store(on) }

// sessionUses counts uses of per-session certificates by serial.
type sessionUses struct {
	mu sync.Mutex
	m  map[uint64]*sessionUse
}

type sessionUse struct {
	n       int
	expires time.Time
}

// spend counts one use of serial, refusing it past max; entries go once
// their certificate has expired (no use of it can pass the certificate
// check then).
func (u *sessionUses) spend(serial uint64, expires time.Time, max int, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[uint64]*sessionUse{}
	}
	for k, e := range u.m {
		if now.After(e.expires.Add(time.Minute)) {
			delete(u.m, k)
		}
	}
	e := u.m[serial]
	if e == nil {
		e = &sessionUse{expires: expires}
		u.m[serial] = e
	}
	if e.n >= max {
		return false
	}
	e.n++
	return true
}
