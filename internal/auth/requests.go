package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/notify"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

const prefixRequests = "/access_requests/"

// CreateAccessRequest is wire.CreateAccessRequest: the API carries it.
type CreateAccessRequest = wire.CreateAccessRequest

func accessErr(err error) error {
	switch {
	case errors.Is(err, access.ErrDenied):
		return fmt.Errorf("%w: %v", ErrAccessDenied, err)
	case errors.Is(err, access.ErrInvalid):
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return err
}

// requestCommand is the CLI command for a request's next step. There is no
// web page for requests yet, so notifications carry this, not a link.
func requestCommand(r *access.Request) string {
	switch r.State {
	case access.StatePending:
		return "warden request review " + r.ID
	case access.StateApproved:
		return "warden request use " + r.ID
	}
	return "warden request show " + r.ID
}

func (s *Server) notifyRequest(event string, r *access.Request) {
	if s.notifier == nil {
		return
	}
	text := fmt.Sprintf("Access request %s by %s for %s: %s (%s, %d/%d approvals)", r.ID, r.User,
		strings.Join(r.Roles, ", "), r.State, cmp.Or(r.Reason, "no reason given"), r.Approvals(), r.Thresholds.Approve)
	s.notifier.Notify(notify.Message{Event: event, Text: text, Command: requestCommand(r), Fields: map[string]any{
		"id": r.ID, "user": r.User, "roles": r.Roles, "reason": r.Reason, "state": r.State, "reviewers": r.Reviewers,
		"reviews": r.Reviews, "thresholds": r.Thresholds, "created": r.Created, "pending_expires": r.PendingExpires,
		"access_expires": r.AccessExpires, "duration": r.Duration.String()}})
}

func (s *Server) requestEvent(event string, c Caller, r *access.Request, extra map[string]any) {
	fields := map[string]any{"request_id": r.ID, "roles": r.Roles, "state": r.State, "requester": r.User}
	for k, v := range extra {
		fields[k] = v
	}
	s.emit(context.Background(), audit.Event{Event: event, User: c.Name(), Success: true, Fields: fields})
}

// CreateAccessRequest files a request for extra roles.
func (s *Server) CreateAccessRequest(ctx context.Context, c Caller, in CreateAccessRequest) (*access.Request, error) {
	if err := s.authorize(c, "CreateAccessRequest"); err != nil {
		return nil, err
	}
	if err := s.CheckLock(lock.Subject{User: c.User, Roles: c.Roles}); err != nil {
		return nil, err
	}
	u, err := s.userRecord(ctx, c.User)
	if err != nil {
		return nil, err
	}
	if err := s.botMayRequestAccess(u); err != nil {
		return nil, err
	}
	r, err := access.New(access.CreateParams{
		User: c.User, UserRoles: s.roles.get(u.Roles), Roles: in.Roles, Reason: in.Reason, Duration: in.Duration,
		Reviewers: in.Reviewers, Now: s.now().UTC(), PendingTTL: s.cfg.RequestPendingTTL,
		ExistingRoles: func(name string) bool { return len(s.roles.get([]string{name})) == 1 },
	})
	if err != nil {
		return nil, accessErr(err)
	}
	if err := s.createJSON(ctx, prefixRequests+r.ID, r, time.Time{}); err != nil {
		return nil, fmt.Errorf("store access request: %w", err)
	}
	s.requestEvent(audit.RequestCreate, c, r, map[string]any{"reason": r.Reason, "duration": r.Duration.String()})
	s.notifyRequest(audit.RequestCreate, r)
	return r, nil
}

// requestVisibility returns which requests c may see: all, or (when it may
// see its share only) its own and those it may review. The caller-only part
// is worked out once.
func (s *Server) requestVisibility(c Caller, all bool) func(r *access.Request) bool {
	if all {
		return func(*access.Request) bool { return true }
	}
	roles := s.roles.get(c.Roles)
	return func(r *access.Request) bool { return r.User == c.User || access.CanReview(roles, r) }
}

// ListAccessRequests lists the requests the caller may see.
func (s *Server) ListAccessRequests(ctx context.Context, c Caller) ([]*access.Request, error) {
	seeAll, err := s.authorizeShare(c, "ListAccessRequests")
	if err != nil {
		return nil, err
	}
	requests, err := listJSON[*access.Request](ctx, s.b, prefixRequests)
	if err != nil {
		return nil, err
	}
	now := s.now()
	visible := s.requestVisibility(c, seeAll)
	out := requests[:0]
	for _, r := range requests {
		r.Expire(now) // show the state as of now; the sweeper persists it
		if visible(r) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// GetAccessRequest returns one request.
func (s *Server) GetAccessRequest(ctx context.Context, c Caller, id string) (*access.Request, error) {
	seeAll, err := s.authorizeShare(c, "GetAccessRequest")
	if err != nil {
		return nil, err
	}
	r, _, err := s.loadRequest(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.requestVisibility(c, seeAll)(r) {
		return nil, fmt.Errorf("access request %q %w", id, storage.ErrNotFound)
	}
	r.Expire(s.now())
	return r, nil
}

func (s *Server) loadRequest(ctx context.Context, id string) (*access.Request, int64, error) {
	if id == "" || len(id) > 64 {
		return nil, 0, badRequest("invalid access request id")
	}
	var r access.Request
	rev, err := s.getJSONRev(ctx, prefixRequests+id, &r)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, 0, fmt.Errorf("access request %q %w", id, storage.ErrNotFound)
		}
		return nil, 0, err
	}
	return &r, rev, nil
}

// updateRequest applies fn with compare-and-swap, retrying on conflicts. fn
// reports whether it changed the request; when it returns an error nothing is
// stored. Only sweepRequests stores EXPIRED (fn elsewhere refuses a request
// past its expiry), because it is the path that audits and notifies expiry.
func (s *Server) updateRequest(ctx context.Context, id string, fn func(r *access.Request) (bool, error)) (*access.Request, error) {
	for attempt := 0; attempt < 5; attempt++ {
		r, rev, err := s.loadRequest(ctx, id)
		if err != nil {
			return nil, err
		}
		changed, err := fn(r)
		if err != nil {
			return nil, err
		}
		if !changed {
			return r, nil
		}
		err = s.casJSON(ctx, prefixRequests+id, rev, r, time.Time{})
		if errors.Is(err, storage.ErrCompareFailed) {
			continue
		}
		return r, err
	}
	return nil, errors.New("access request is being changed concurrently; try again")
}

// ReviewAccessRequest approves or denies.
func (s *Server) ReviewAccessRequest(ctx context.Context, c Caller, id string, approve bool, reason string) (*access.Request, error) {
	if err := s.authorize(c, "ReviewAccessRequest"); err != nil {
		return nil, err
	}
	if len(reason) > 1024 {
		return nil, badRequest("the review reason is longer than 1024 bytes")
	}
	before := ""
	r, err := s.updateRequest(ctx, id, func(r *access.Request) (bool, error) {
		before = r.State
		// AddReview refuses a request past its expiry without changing it;
		// the sweeper expires it and audits that.
		ok, err := r.AddReview(c.User, s.roles.get(c.Roles), approve, reason, s.now().UTC())
		return ok, accessErr(err)
	})
	if err != nil {
		return nil, err
	}
	s.requestEvent(audit.RequestReview, c, r, map[string]any{"approve": approve, "reason": reason})
	switch {
	case before == access.StatePending && r.State == access.StateApproved:
		s.requestEvent(audit.RequestApproved, c, r, map[string]any{"access_expires": r.AccessExpires})
		s.notifyRequest(audit.RequestApproved, r)
	case before == access.StatePending && r.State == access.StateDenied:
		s.requestEvent(audit.RequestDenied, c, r, nil)
		s.notifyRequest(audit.RequestDenied, r)
	default:
		s.notifyRequest(audit.RequestReview, r)
	}
	return r, nil
}

// RevokeAccessRequest ends a request: new certificates are refused and a
// lock on the request ends live sessions that depend on it.
func (s *Server) RevokeAccessRequest(ctx context.Context, c Caller, id, reason string) (*access.Request, error) {
	revokeAll, err := s.authorizeShare(c, "RevokeAccessRequest")
	if err != nil {
		return nil, err
	}
	r, err := s.updateRequest(ctx, id, func(r *access.Request) (bool, error) {
		if !revokeAll && r.User != c.User {
			return false, denied("you may revoke only your own access requests")
		}
		if err := r.Revoke(s.now().UTC(), reason); err != nil {
			return false, accessErr(err)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	// The lock lasts as long as the access could have.
	lockTTL := time.Until(r.AccessExpires)
	if lockTTL <= 0 {
		lockTTL = r.MaxDuration
	}
	if _, err := s.CreateLock(ctx, AdminCaller(), CreateLockRequest{Target: lock.Target{Request: r.ID},
		Message: "access request " + r.ID + " was revoked", TTL: lockTTL}); err != nil {
		s.log.Error("lock revoked request", "request", r.ID, "err", err)
	}
	s.requestEvent(audit.RequestRevoked, c, r, map[string]any{"reason": reason})
	s.notifyRequest(audit.RequestRevoked, r)
	return r, nil
}

// UseAccessRequest re-issues the caller's certificates with the request's
// roles; they expire no later than the request.
func (s *Server) UseAccessRequest(ctx context.Context, c Caller, id, publicKey, remote string) (*LoginResponse, error) {
	if err := s.authorize(c, "UseAccessRequest"); err != nil {
		return nil, err
	}
	// The issue time comes before the user and the request are read: a
	// removal, reset or revocation after the reads voids the certificates.
	issued := s.now()
	r, _, err := s.loadRequest(ctx, id)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if err := r.Usable(c.User, now); err != nil {
		return nil, accessErr(err)
	}
	if err := s.CheckLock(lock.Subject{User: c.User, Roles: c.Roles, Requests: []string{r.ID}}); err != nil {
		return nil, err
	}
	pub, err := parsePublicKey(publicKey)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	// New certificates from old ones: the user as of now, never a removed,
	// reset or changed one.
	u, err := s.currentUser(ctx, c)
	if err != nil {
		return nil, err
	}
	roles := append(append([]string(nil), u.Roles...), r.Roles...)
	resp, err := s.issueCerts(ctx, issueParams{user: u.Name, roles: uniq(roles), traits: u.Traits, pub: pub,
		ttl: r.AccessExpires.Sub(now), remote: remote, requests: []string{r.ID}, notAfter: r.AccessExpires,
		issued: issued, mfaDevice: c.MFADevice})
	if err != nil {
		return nil, err
	}
	s.requestEvent(audit.RequestUsed, c, r, map[string]any{"cert_expires": resp.Expires})
	return resp, nil
}

// SuggestRoles names the roles the caller could request to use login on a
// node (for a helpful denial message).
func (s *Server) SuggestRoles(ctx context.Context, c Caller, login, nodeName string) ([]string, error) {
	if err := s.authorize(c, "SuggestRoles"); err != nil {
		return nil, err
	}
	u, err := s.userRecord(ctx, c.User)
	if err != nil {
		return nil, err
	}
	all, err := listJSON[*policy.Role](ctx, s.b, prefixRoles)
	if err != nil {
		return nil, err
	}
	var target *Node
	for _, n := range s.liveNodes() {
		if n.Name == nodeName || n.ID == nodeName || n.Hostname == nodeName {
			target = &n
			break
		}
	}
	if target == nil {
		return nil, nil
	}
	return access.Suggest(s.roles.get(u.Roles), all, u.Traits,
		policy.Target{Login: login, NodeName: target.Name, NodeID: target.ID, Labels: target.Labels}), nil
}

// sweepRequests expires requests and persists the change; run periodically.
// It is the only code that stores EXPIRED, and it emits access_request.expired
// and the notification once per request: only for the update that changed
// the stored state, never for a request some other sweep already expired.
func (s *Server) sweepRequests(ctx context.Context) {
	all, err := listJSON[*access.Request](ctx, s.b, prefixRequests)
	if err != nil {
		return
	}
	now := s.now()
	for _, r := range all {
		if r.State != access.StatePending && r.State != access.StateApproved {
			continue
		}
		probe := *r
		if !probe.Expire(now) {
			continue
		}
		expired := false
		updated, err := s.updateRequest(ctx, r.ID, func(r *access.Request) (bool, error) {
			expired = r.Expire(now) // the last attempt is the one stored
			return expired, nil
		})
		if err != nil || !expired {
			continue
		}
		system := Caller{Kind: KindAdmin, User: "system"}
		s.requestEvent(audit.RequestExpired, system, updated, nil)
		s.notifyRequest(audit.RequestExpired, updated)
		if r.State == access.StateApproved {
			// Its certificates expire with it, but a session may outlive
			// its certificate (disconnect_expired_cert: false): a lock on
			// the request ends those too, as a revocation does.
			now := s.now().UTC()
			l := &lock.Lock{Target: lock.Target{Request: r.ID}, Message: "access request " + r.ID + " expired",
				CreatedBy: system.Name(), CreatedAt: now, Expires: now.Add(time.Hour)}
			if err := s.storeLock(ctx, system, l); err != nil {
				s.log.Error("lock expired request", "request", r.ID, "err", err)
			}
		}
	}
}
