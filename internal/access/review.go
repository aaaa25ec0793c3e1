package access

import (
	"fmt"
	"time"

	"github.com/warden-sh/warden/internal/policy"
)

// CanReview reports whether a reviewer holding reviewerRoles may review r:
// every requested role must match some allow.review_requests.roles pattern
// of the reviewer's roles, and none may match a deny.review_requests.roles
// pattern.
func CanReview(reviewerRoles []*policy.Role, r *Request) bool {
	if r == nil || len(r.Roles) == 0 {
		return false
	}
	for _, name := range r.Roles {
		allowed := false
		for _, role := range reviewerRoles {
			if role == nil {
				continue
			}
			if c := role.Spec.Deny.ReviewRequests; c != nil && policy.MatchRole(c.Roles, name) {
				return false
			}
			if c := role.Spec.Allow.ReviewRequests; c != nil && policy.MatchRole(c.Roles, name) {
				allowed = true
			}
		}
		if !allowed {
			return false
		}
	}
	return true
}

// AddReview records reviewer's decision and resolves the request once a
// threshold is reached: approvals >= Thresholds.Approve approves (access then
// lasts Duration from now), denials >= Thresholds.Deny denies.
//
// changed reports whether r was modified and must be stored; it is false
// whenever err is set. A request past its expiry is refused and left as it
// is: only Expire moves a request to EXPIRED, so that the one caller that
// stores that change (the auth sweeper) also reports it.
func (r *Request) AddReview(reviewer string, reviewerRoles []*policy.Role, approve bool, reason string, now time.Time) (changed bool, err error) {
	if reviewer == "" {
		return false, invalidf("a review needs a reviewer")
	}
	if err := checkReason(reason); err != nil {
		return false, err
	}
	if err := r.expiredErr(now); err != nil {
		return false, err
	}
	if r.State != StatePending {
		return false, conflictf("access request %s is %s and can no longer be reviewed", r.ID, stateWord(r.State))
	}
	if reviewer == r.User {
		return false, deniedf("you cannot review your own access request")
	}
	if r.reviewedBy(reviewer) {
		return false, conflictf("you already reviewed this request")
	}
	if !CanReview(reviewerRoles, r) {
		return false, deniedf("your roles do not allow reviewing requests for %s", quoteList(r.Roles))
	}
	r.Reviews = append(r.Reviews, Review{Author: reviewer, Approve: approve, Reason: reason, Time: now})
	switch {
	case r.Denials() >= r.Thresholds.Deny:
		r.State = StateDenied
		r.Resolved = now
		r.ResolveReason = fmt.Sprintf("denied by %d reviewer(s)", r.Denials())
	case r.Approvals() >= r.Thresholds.Approve:
		r.State = StateApproved
		r.Resolved = now
		r.AccessExpires = now.Add(r.Duration)
		r.ResolveReason = fmt.Sprintf("approved by %d reviewer(s)", r.Approvals())
	}
	return true, nil
}

func (r *Request) reviewedBy(author string) bool {
	for _, rv := range r.Reviews {
		if rv.Author == author {
			return true
		}
	}
	return false
}

// Approvals counts distinct reviewers who approved.
func (r *Request) Approvals() int { return r.count(true) }

// Denials counts distinct reviewers who denied.
func (r *Request) Denials() int { return r.count(false) }

// count counts each author's first review only, so stored data that somehow
// holds two reviews by one person still counts once.
func (r *Request) count(approve bool) int {
	seen := make(map[string]bool, len(r.Reviews))
	n := 0
	for _, rv := range r.Reviews {
		if seen[rv.Author] {
			continue
		}
		seen[rv.Author] = true
		if rv.Approve == approve {
			n++
		}
	}
	return n
}

// Expire moves a PENDING request past PendingExpires or an APPROVED request
// past AccessExpires to EXPIRED. It reports whether r changed.
func (r *Request) Expire(now time.Time) bool {
	at, reason, ok := r.expiry(now)
	if !ok {
		return false
	}
	r.State = StateExpired
	r.Resolved = at
	r.ResolveReason = reason
	return true
}

// expiry reports whether Expire(now) would expire r, and when and why.
func (r *Request) expiry(now time.Time) (at time.Time, reason string, ok bool) {
	switch {
	case r.State == StatePending && !now.Before(r.PendingExpires):
		return r.PendingExpires, "request expired before it was reviewed", true
	case r.State == StateApproved && !now.Before(r.AccessExpires):
		return r.AccessExpires, "access expired", true
	}
	return time.Time{}, "", false
}

// expiredErr returns a conflict if r is past its expiry at now but still
// stored as PENDING or APPROVED (the sweeper has not expired it yet).
func (r *Request) expiredErr(now time.Time) error {
	at, _, ok := r.expiry(now)
	if !ok {
		return nil
	}
	if r.State == StatePending {
		return conflictf("access request %s has expired: it was not reviewed before %s", r.ID, fmtTime(at))
	}
	return conflictf("access request %s has expired: its access ended at %s", r.ID, fmtTime(at))
}

// Revoke ends a PENDING or APPROVED request. Certificates issued from it stop
// being accepted once callers check Usable (and locks, for live sessions).
// A request past its expiry is refused and left for Expire.
func (r *Request) Revoke(now time.Time, reason string) error {
	if err := checkReason(reason); err != nil {
		return err
	}
	if err := r.expiredErr(now); err != nil {
		return err
	}
	if r.State != StatePending && r.State != StateApproved {
		return conflictf("access request %s is %s and cannot be revoked", r.ID, stateWord(r.State))
	}
	r.State = StateRevoked
	r.Resolved = now
	r.ResolveReason = reason
	if reason == "" {
		r.ResolveReason = "revoked"
	}
	return nil
}

// Usable returns nil if user may use r now to obtain its roles: r is
// APPROVED, not past AccessExpires, and was made by user. Otherwise it
// returns an *Error explaining why.
func (r *Request) Usable(user string, now time.Time) error {
	if user != r.User {
		return deniedf("access request %s was not made by you", r.ID)
	}
	switch r.State {
	case StateApproved:
		if !now.Before(r.AccessExpires) {
			return deniedf("access request %s expired at %s", r.ID, fmtTime(r.AccessExpires))
		}
		return nil
	case StatePending:
		if !now.Before(r.PendingExpires) {
			return deniedf("access request %s expired at %s before it was approved", r.ID, fmtTime(r.PendingExpires))
		}
		return deniedf("access request %s is still pending (%d of %d approvals)", r.ID, r.Approvals(), r.Thresholds.Approve)
	case StateDenied:
		return deniedf("access request %s was denied", r.ID)
	case StateExpired:
		return deniedf("access request %s expired at %s", r.ID, fmtTime(r.Resolved))
	case StateRevoked:
		return deniedf("access request %s was revoked", r.ID)
	}
	return deniedf("access request %s is in unknown state %q", r.ID, r.State)
}

func stateWord(state string) string {
	switch state {
	case StatePending:
		return "pending"
	case StateApproved:
		return "already approved"
	case StateDenied:
		return "denied"
	case StateExpired:
		return "expired"
	case StateRevoked:
		return "revoked"
	}
	return fmt.Sprintf("in state %q", state)
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
