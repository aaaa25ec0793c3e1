package auth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/krl"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage"
)

// prefixIssued holds a record of every SSH user certificate auth issues,
// until it expires: the KRL revokes certificates by serial from it.
const prefixIssued = "/issued/"

// issuedCert is what the KRL needs to know of an issued certificate.
type issuedCert struct {
	Serial    uint64    `json:"serial"`
	User      string    `json:"user"`
	Roles     []string  `json:"roles,omitempty"`
	Requests  []string  `json:"requests,omitempty"`
	Issued    time.Time `json:"issued"`
	MFADevice string    `json:"mfa_device,omitempty"`
	Expires   time.Time `json:"expires"`
	// group is what, with the issue time, decides the certificate's
	// verdict (user, roles, requests, MFA device): set by setGroup when
	// the record enters the KRL's view, so that a build compares strings.
	group string
	// groupHash is group's hash: a build's maps are keyed by it (a
	// collision is told apart by group).
	groupHash uint64
}

// groupSeed seeds the group hashes of this process.
var groupSeed = maphash.MakeSeed()

func (r *issuedCert) setGroup() *issuedCert {
	r.group = r.User + "\x00" + strings.Join(r.Roles, ",") + "\x00" + strings.Join(r.Requests, ",") + "\x00" + r.MFADevice
	r.groupHash = maphash.String(groupSeed, r.group)
	return r
}

// recordIssued remembers an issued user certificate until it expires. A
// certificate auth cannot record is not handed out: one the KRL could not
// revoke would outlive a lock on a server the proxy does not front.
func (s *Server) recordIssued(ctx context.Context, cert *ssh.Certificate, c Caller) error {
	exp := time.Unix(int64(cert.ValidBefore), 0).UTC()
	rec := issuedCert{Serial: cert.Serial, User: c.User, Roles: c.Roles, Requests: c.RequestIDs, Issued: c.Issued.UTC(),
		MFADevice: c.MFADevice, Expires: exp}
	key := fmt.Sprintf("%s%016x", prefixIssued, cert.Serial)
	if err := s.putJSON(ctx, key, rec, exp); err != nil {
		return fmt.Errorf("record issued certificate: %w", err)
	}
	// In the KRL's view at once (the watch delivers it again).
	s.agentless.issuedMu.Lock()
	s.agentless.issuedSet[key] = rec.setGroup()
	s.agentless.issuedMu.Unlock()
	return nil
}

// startIssued starts the in-memory view of the issued certificates.
func (s *Server) startIssued(ctx context.Context) error {
	a := &s.agentless
	a.issuedSet = map[string]*issuedCert{}
	a.issued = &feed{b: s.b, log: s.log, prefix: prefixIssued,
		reset: func(items []storage.Item) {
			m := make(map[string]*issuedCert, len(items))
			for _, it := range items {
				rec := new(issuedCert)
				if json.Unmarshal(it.Value, rec) == nil {
					m[it.Key] = rec.setGroup()
				}
			}
			a.issuedMu.Lock()
			a.issuedSet = m
			a.issuedMu.Unlock()
		},
		apply: func(ev storage.Event) {
			a.issuedMu.Lock()
			defer a.issuedMu.Unlock()
			if ev.Type == storage.EventDelete {
				delete(a.issuedSet, ev.Item.Key)
				return
			}
			rec := new(issuedCert)
			if json.Unmarshal(ev.Item.Value, rec) == nil {
				a.issuedSet[ev.Item.Key] = rec.setGroup()
			}
		}}
	return a.issued.start(ctx)
}

// KRLResult is a KRL and its digest.
type KRLResult struct {
	// Data is the KRL in OpenSSH's format (sshd's RevokedKeys).
	Data []byte
	// SHA256 is the hex digest of what it revokes (not of Data, which
	// carries its generation time): equal digests, same revocations.
	SHA256 string
	// Serials and KeyIDs count what it revokes.
	Serials, KeyIDs int
}

// KRL returns the key revocation list of every user certificate that must
// no longer be accepted: those CurrentCaller now refuses (locked user,
// role, request or MFA device; removed or reset user, or one who lost a
// role; revoked or expired request), by serial, and the key IDs (user
// names) of users under a lock with no issue-time bound, which covers
// certificates auth has no record of. Locks on a login, node or session
// say nothing about a certificate as a whole: the proxy and nodes enforce
// those, a KRL cannot.
//
// An agentless server's own identity (warden sign --host) may fetch it; its
// fetch time is what warden nodes ls shows as the KRL's age.
//
// With since set (the digest of the KRL the caller holds), KRL waits until
// the list differs or wait passed (the long poll of warden krl sync),
// re-checking every second and at once when a lock is added.
func (s *Server) KRL(ctx context.Context, c Caller, since string, wait time.Duration) (*KRLResult, error) {
	all, err := s.authorizeShare(c, "KRL")
	if err != nil {
		return nil, err
	}
	deadline := time.NewTimer(max(wait, 0))
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		next := s.LocksChanged()
		res, err := s.krlFor(ctx, c, all)
		if err != nil || since == "" || res.SHA256 != since || wait <= 0 {
			return res, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return res, nil
		case <-tick.C:
		case <-next:
		}
	}
}

func (s *Server) krlFor(ctx context.Context, c Caller, all bool) (*KRLResult, error) {
	if !all {
		name, ok := strings.CutPrefix(c.NodeID, AgentlessHostIDPrefix)
		if !ok {
			return nil, denied("only agentless servers fetch the KRL")
		}
		var rec agentlessRecord
		if err := s.getJSON(ctx, prefixAgentless+name, &rec); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil, fmt.Errorf("%w: agentless server %q is no longer registered", ErrUnauthenticated, name)
			}
			return nil, err
		}
		defer s.noteKRLFetch(name)
	}
	return s.cachedKRL(ctx)
}

// krlCacheFor is how long a built KRL serves every caller (many servers'
// syncs long-poll at once); a new lock invalidates it at once.
const krlCacheFor = time.Second

type krlCache struct {
	res   *KRLResult
	at    time.Time
	valid <-chan struct{} // closed by the next lock added
	locks int             // how many locks there were (a removal)
}

func (s *Server) cachedKRL(ctx context.Context) (*KRLResult, error) {
	s.agentless.mu.Lock()
	c := s.agentless.krl
	s.agentless.mu.Unlock()
	if c != nil && time.Since(c.at) < krlCacheFor && c.locks == s.locks.set.Len() {
		select {
		case <-c.valid:
		default:
			return c.res, nil
		}
	}
	valid, locks := s.LocksChanged(), s.locks.set.Len()
	at := time.Now()
	res, err := s.buildKRL(ctx)
	if err != nil {
		return nil, err
	}
	s.agentless.mu.Lock()
	s.agentless.krl = &krlCache{res: res, at: at, valid: valid, locks: locks}
	s.agentless.mu.Unlock()
	return res, nil
}

func (s *Server) noteKRLFetch(name string) {
	s.agentless.mu.Lock()
	defer s.agentless.mu.Unlock()
	if s.agentless.krlFetched == nil {
		s.agentless.krlFetched = map[string]time.Time{}
	}
	s.agentless.krlFetched[name] = s.now().UTC()
}

// buildKRL makes the KRL from the issued-certificate records and the locks.
func (s *Server) buildKRL(ctx context.Context) (*KRLResult, error) {
	// The records are never changed once in the set: a copy of the
	// pointers is a consistent view, and certificates are issued (added)
	// while the KRL is built.
	s.agentless.issuedMu.RLock()
	recs := make([]*issuedCert, 0, len(s.agentless.issuedSet))
	for _, r := range s.agentless.issuedSet {
		recs = append(recs, r)
	}
	s.agentless.issuedMu.RUnlock()
	now := s.now()
	// Certificates of one group (user, roles, requests, MFA device) share
	// the locks on what they say, looked up once per group; each
	// certificate then only compares its issue time with their bounds.
	// Certificates of one group at one issue time (a login's) share the
	// rest of the verdict (CurrentCaller's): each is checked once.
	type verdictKey struct {
		group  string
		issued int64
	}
	type groupLocks struct {
		group string
		locks []*lock.Lock
	}
	locksOf := map[uint64]groupLocks{}
	verdicts := map[verdictKey]bool{}
	serials := make([]uint64, 0, len(recs))
	for _, r := range recs {
		if !now.Before(r.Expires) {
			continue
		}
		// The locks on what the certificate says first: the check
		// CurrentCaller starts with, and all a locked certificate needs.
		g, ok := locksOf[r.groupHash]
		if !ok || g.group != r.group {
			sub := lock.Subject{User: r.User, Roles: r.Roles, Requests: r.Requests}
			if r.MFADevice != "" {
				sub.MFADevices = []string{r.MFADevice}
			}
			g = groupLocks{group: r.group, locks: s.locks.set.Matching(sub, now)}
			if !ok {
				locksOf[r.groupHash] = g
			}
		}
		locks := g.locks
		locked := false
		for _, l := range locks {
			if l.CoversIssued(r.Issued) {
				locked = true
				break
			}
		}
		if locked {
			serials = append(serials, r.Serial)
			continue
		}
		k := verdictKey{r.group, r.Issued.UnixNano()}
		revoked, ok := verdicts[k]
		if !ok {
			_, err := s.currentCaller(ctx, Caller{Kind: KindUser, User: r.User, Roles: r.Roles, RequestIDs: r.Requests,
				Issued: r.Issued, MFADevice: r.MFADevice, Expires: r.Expires})
			switch {
			case err == nil:
			case errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrUnauthenticated):
				revoked = true
			default:
				// Fail closed: no KRL rather than one missing a revocation.
				return nil, fmt.Errorf("build KRL: %w", err)
			}
			verdicts[k] = revoked
		}
		if revoked {
			serials = append(serials, r.Serial)
		}
	}
	var keyIDs []string
	for _, l := range s.locks.set.List() {
		if l.Target.User != "" && l.IssuedNotAfter.IsZero() && lockInForce(l, now) {
			keyIDs = append(keyIDs, l.Target.User)
		}
	}
	sec := krl.CertSection{CA: s.ca.UserCAPublicKey(), Serials: serials, KeyIDs: keyIDs}
	k := &krl.KRL{Version: uint64(now.UnixMilli()), Generated: now, Comment: "warden " + s.cfg.ClusterName, Certs: []krl.CertSection{sec}}
	// The digest covers what is revoked, not when the list was made.
	data, sum := k.MarshalDigest()
	return &KRLResult{Data: data, SHA256: hex.EncodeToString(sum[:]), Serials: len(serials), KeyIDs: len(keyIDs)}, nil
}

func lockInForce(l *lock.Lock, now time.Time) bool {
	return l.Expires.IsZero() || now.Before(l.Expires)
}
