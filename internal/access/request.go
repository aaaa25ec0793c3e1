// Package access implements just-in-time access requests: a user asks for
// extra roles for a reason and a duration, reviewers approve or deny, and an
// approved request lets the user re-issue a certificate carrying those roles
// until it expires.
//
// A Request is a small state machine (PENDING -> APPROVED | DENIED | EXPIRED
// | REVOKED, APPROVED -> EXPIRED | REVOKED). The requested roles, thresholds
// and durations are fixed when the request is created from the requester's
// role definitions; there is no way to widen a request afterwards. The
// package is plain Go with no I/O: callers load and store requests and pass
// the current time.
package access

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warden-sh/warden/internal/policy"
)

// States of a request.
const (
	StatePending  = "PENDING"
	StateApproved = "APPROVED"
	StateDenied   = "DENIED"
	StateExpired  = "EXPIRED"
	StateRevoked  = "REVOKED"
)

// Defaults and limits.
const (
	// DefaultMaxDuration caps approved access when no matching request
	// condition sets max_duration.
	DefaultMaxDuration = 8 * time.Hour
	// DefaultPendingTTL is how long a request waits for reviews.
	DefaultPendingTTL = time.Hour
	// MaxRoles is the most roles one request may ask for.
	MaxRoles = 32
	// MaxReviewers is the most suggested reviewers a request keeps.
	MaxReviewers = 32
	// MaxReasonLen bounds request and review reasons, in bytes.
	MaxReasonLen = 4096
)

// Review is one reviewer's decision. Reviews are only ever appended.
type Review struct {
	Author  string    `json:"author"`
	Approve bool      `json:"approve"`
	Reason  string    `json:"reason,omitempty"`
	Time    time.Time `json:"time"`
}

// Request is an access request. Use New to create one; the fields are
// exported for storage and rendering, and the methods move it between
// states.
type Request struct {
	ID     string   `json:"id"`
	User   string   `json:"user"`
	Roles  []string `json:"roles"`
	Reason string   `json:"reason,omitempty"`
	State  string   `json:"state"`
	// Reviewers are suggested reviewers: those the requester named plus the
	// suggested_reviewers of the request conditions that matched.
	Reviewers []string `json:"reviewers,omitempty"`
	Reviews   []Review `json:"reviews,omitempty"`
	// Thresholds are resolved at creation; both are at least 1.
	Thresholds policy.Thresholds `json:"thresholds"`
	// MaxDuration is the resolved cap on access after approval.
	MaxDuration time.Duration `json:"max_duration"`
	// Duration is how long access lasts once approved (<= MaxDuration).
	Duration time.Duration `json:"duration"`
	Created  time.Time     `json:"created"`
	// PendingExpires is when an unresolved request expires.
	PendingExpires time.Time `json:"pending_expires"`
	// AccessExpires is set at approval: approval time + Duration.
	AccessExpires time.Time `json:"access_expires,omitzero"`
	// Resolved is the time of the last state change out of PENDING or
	// APPROVED; ResolveReason says why.
	Resolved      time.Time `json:"resolved,omitzero"`
	ResolveReason string    `json:"resolve_reason,omitempty"`
}

// CreateParams are the inputs of New.
type CreateParams struct {
	User string
	// UserRoles are the requester's current role definitions.
	UserRoles []*policy.Role
	// Roles are the requested role names.
	Roles []string
	// ExistingRoles reports whether a role exists; required.
	ExistingRoles func(name string) bool
	Reason        string
	// Duration of access after approval; 0 means MaxDuration.
	Duration time.Duration
	// Reviewers the requester suggests.
	Reviewers []string
	// Now is the creation time; zero means time.Now().
	Now time.Time
	// PendingTTL is how long the request waits for reviews; 0 means
	// DefaultPendingTTL.
	PendingTTL time.Duration
}

// New validates p against the requester's roles and returns a PENDING
// request. Errors are *Error values with a message safe to show the user.
func New(p CreateParams) (*Request, error) {
	if p.ExistingRoles == nil {
		return nil, fmt.Errorf("access: CreateParams.ExistingRoles is required")
	}
	if p.User == "" {
		return nil, invalidf("a request needs a user")
	}
	roles, err := cleanRoles(p.Roles)
	if err != nil {
		return nil, err
	}
	if err := checkReason(p.Reason); err != nil {
		return nil, err
	}
	if p.Duration < 0 {
		return nil, invalidf("duration must not be negative")
	}
	if p.PendingTTL < 0 {
		return nil, invalidf("pending TTL must not be negative")
	}
	held := make(map[string]bool, len(p.UserRoles))
	for _, r := range p.UserRoles {
		if r != nil {
			held[r.Metadata.Name] = true
		}
	}

	var conds []*policy.RequestConditions
	for _, name := range roles {
		if held[name] {
			return nil, invalidf("you already have role %q; request only roles you do not hold", name)
		}
		matched, err := requestConditions(p.UserRoles, name)
		if err != nil {
			return nil, err
		}
		if !p.ExistingRoles(name) {
			return nil, invalidf("role %q does not exist", name)
		}
		conds = append(conds, matched...)
	}

	res := resolve(conds)
	if res.reasonRequired && strings.TrimSpace(p.Reason) == "" {
		return nil, invalidf("a reason is required to request %s", quoteList(roles))
	}
	dur := p.Duration
	if dur == 0 {
		dur = res.maxDuration
	}
	if dur > res.maxDuration {
		return nil, invalidf("requested duration %s is longer than the maximum of %s", dur, res.maxDuration)
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	ttl := p.PendingTTL
	if ttl == 0 {
		ttl = DefaultPendingTTL
	}
	id, err := newID()
	if err != nil {
		return nil, fmt.Errorf("access: new request id: %w", err)
	}
	return &Request{
		ID:             id,
		User:           p.User,
		Roles:          roles,
		Reason:         p.Reason,
		State:          StatePending,
		Reviewers:      reviewers(p.User, p.Reviewers, res.reviewers),
		Thresholds:     res.thresholds,
		MaxDuration:    res.maxDuration,
		Duration:       dur,
		Created:        now,
		PendingExpires: now.Add(ttl),
	}, nil
}

// cleanRoles checks the requested names and drops duplicates, keeping the
// first-seen order.
func cleanRoles(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, invalidf("request at least one role")
	}
	out := make([]string, 0, len(in))
	for _, name := range in {
		if err := checkRoleName(name); err != nil {
			return nil, err
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	if len(out) > MaxRoles {
		return nil, invalidf("a request may ask for at most %d roles", MaxRoles)
	}
	return out, nil
}

func checkRoleName(name string) error {
	if name == "" {
		return invalidf("empty role name")
	}
	if len(name) > 128 || !utf8.ValidString(name) || strings.ContainsAny(name, "*?[]\\") ||
		strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return invalidf("invalid role name %q", name)
	}
	return nil
}

func checkReason(reason string) error {
	if len(reason) > MaxReasonLen {
		return invalidf("reason is longer than %d bytes", MaxReasonLen)
	}
	if !utf8.ValidString(reason) {
		return invalidf("reason is not valid UTF-8")
	}
	return nil
}

// requestConditions returns the allow.request conditions of the user's roles
// that let them request role name, or an ErrDenied *Error if none does or
// some deny.request matches.
func requestConditions(userRoles []*policy.Role, name string) ([]*policy.RequestConditions, error) {
	var matched []*policy.RequestConditions
	for _, r := range userRoles {
		if r == nil {
			continue
		}
		if c := r.Spec.Deny.Request; c != nil && policy.MatchRole(c.Roles, name) {
			return nil, deniedf("your roles do not allow requesting role %q", name)
		}
		if c := r.Spec.Allow.Request; c != nil && policy.MatchRole(c.Roles, name) {
			matched = append(matched, c)
		}
	}
	if len(matched) == 0 {
		return nil, deniedf("your roles do not allow requesting role %q", name)
	}
	return matched, nil
}

// Requestable reports whether a user holding userRoles may request role name:
// some allow.request.roles pattern matches it and no deny.request.roles does.
// It does not check whether the user already holds the role.
func Requestable(userRoles []*policy.Role, name string) bool {
	_, err := requestConditions(userRoles, name)
	return err == nil
}

type resolved struct {
	thresholds     policy.Thresholds
	maxDuration    time.Duration
	reasonRequired bool
	reviewers      []string
}

// resolve folds the matching conditions, most demanding first: the largest
// approval threshold, the smallest denial threshold (unset counts as 1), the
// shortest max_duration that is set.
func resolve(conds []*policy.RequestConditions) resolved {
	res := resolved{thresholds: policy.Thresholds{Approve: 1, Deny: 0}}
	for _, c := range conds {
		approve, deny := max(c.Thresholds.Approve, 1), max(c.Thresholds.Deny, 1)
		res.thresholds.Approve = max(res.thresholds.Approve, approve)
		if res.thresholds.Deny == 0 || deny < res.thresholds.Deny {
			res.thresholds.Deny = deny
		}
		if d := time.Duration(c.MaxDuration); d > 0 && (res.maxDuration == 0 || d < res.maxDuration) {
			res.maxDuration = d
		}
		res.reasonRequired = res.reasonRequired || c.ReasonRequired
		res.reviewers = append(res.reviewers, c.SuggestedReviewers...)
	}
	res.thresholds.Deny = max(res.thresholds.Deny, 1)
	if res.maxDuration == 0 {
		res.maxDuration = DefaultMaxDuration
	}
	return res
}

// reviewers merges the requester's and the roles' suggested reviewers,
// dropping blanks, duplicates and the requester.
func reviewers(user string, lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, r := range l {
			r = strings.TrimSpace(r)
			if r == "" || r == user || slices.Contains(out, r) || len(out) >= MaxReviewers {
				continue
			}
			out = append(out, r)
		}
	}
	return out
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "role " + strings.Join(q, ", ")
}

// newID returns a random UUID (version 4) string.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// Clone returns a deep copy of r.
func (r *Request) Clone() *Request {
	c := *r
	c.Roles = slices.Clone(r.Roles)
	c.Reviewers = slices.Clone(r.Reviewers)
	c.Reviews = slices.Clone(r.Reviews)
	return &c
}

// Fields returns the request's fields keyed by their JSON names, for
// notifications and audit events. Requests hold no secrets.
func (r *Request) Fields() map[string]any {
	f := map[string]any{
		"id":              r.ID,
		"user":            r.User,
		"roles":           slices.Clone(r.Roles),
		"reason":          r.Reason,
		"state":           r.State,
		"reviewers":       slices.Clone(r.Reviewers),
		"approvals":       r.Approvals(),
		"denials":         r.Denials(),
		"approve_needed":  r.Thresholds.Approve,
		"deny_needed":     r.Thresholds.Deny,
		"duration":        r.Duration.String(),
		"max_duration":    r.MaxDuration.String(),
		"created":         r.Created.UTC().Format(time.RFC3339),
		"pending_expires": r.PendingExpires.UTC().Format(time.RFC3339),
	}
	if !r.AccessExpires.IsZero() {
		f["access_expires"] = r.AccessExpires.UTC().Format(time.RFC3339)
	}
	if !r.Resolved.IsZero() {
		f["resolved"] = r.Resolved.UTC().Format(time.RFC3339)
		f["resolve_reason"] = r.ResolveReason
	}
	if n := len(r.Reviews); n > 0 {
		last := r.Reviews[n-1]
		f["last_review_author"] = last.Author
		f["last_review_approve"] = last.Approve
		f["last_review_reason"] = last.Reason
	}
	return f
}
