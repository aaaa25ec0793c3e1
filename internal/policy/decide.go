package policy

import (
	"fmt"
	"strings"
	"time"
)

// DefaultSessionTTL is the session TTL when no role sets max_session_ttl.
const DefaultSessionTTL = 8 * time.Hour

// Identity is who is asking: the certificate's user, role names and traits.
type Identity struct {
	User   string
	Roles  []string
	Traits map[string][]string
}

// Target is the node and OS login being asked for.
type Target struct {
	Login    string
	NodeName string
	NodeID   string
	Labels   map[string]string
}

func (t Target) displayName() string {
	if t.NodeName != "" {
		return t.NodeName
	}
	return t.NodeID
}

// Request is one access decision to make.
type Request struct {
	Identity Identity
	// Roles are the current definitions of Identity.Roles. Names that no
	// longer resolve are simply absent (and so grant nothing).
	Roles  []*Role
	Target Target
}

// Decision is the outcome of Decide.
type Decision struct {
	Allowed bool
	// Reason is short and safe to show to the user.
	Reason string
	// Detail names the role and rule that decided, for the audit log.
	Detail string
	// Options are the merged session options; set only when Allowed.
	Options EffectiveOptions
}

// Err returns nil for an allowed decision and a *DeniedError otherwise.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &DeniedError{Reason: d.Reason, Detail: d.Detail}
}

// EffectiveOptions are the session options after merging all roles.
type EffectiveOptions struct {
	MaxSessionTTL         time.Duration
	PortForwarding        bool
	FileTransfer          bool
	PermitPTY             bool
	ForwardAgent          bool
	RecordSession         string
	RecordInput           bool
	DisconnectExpiredCert bool
	ClientIdleTimeout     time.Duration
	LockMode              string
}

// DeniedError is returned when policy refuses an action. Error() is the
// user-facing Reason; Detail is for the audit log only.
type DeniedError struct {
	Reason string
	Detail string
	// Code, when set, names the refusal for programs (e.g.
	// CodeSessionMFARequired): a client may act on it.
	Code string
}

func (e *DeniedError) Error() string { return e.Reason }

// Decide decides whether req.Identity may log in as req.Target.Login on the
// node req.Target. Deny wins: a role whose deny.logins contains the login, or
// whose deny.node_labels match the node, refuses access. Otherwise one single
// role must allow both the login and the node's labels.
func Decide(req Request) Decision {
	t := req.Target
	node := t.displayName()
	traits := req.Identity.Traits
	if t.Login == "" {
		return Decision{Reason: "no login was given", Detail: "empty login"}
	}
	if node == "" {
		return Decision{Reason: "no node was given", Detail: "empty node name and id"}
	}
	notAllowed := Decision{
		Reason: fmt.Sprintf("access to node %q is not allowed by your roles", node),
	}
	if !hasRole(req.Roles) {
		notAllowed.Detail = fmt.Sprintf("user %q has no roles", req.Identity.User)
		return notAllowed
	}
	for _, r := range req.Roles {
		if r == nil {
			continue
		}
		if valuesContain(r.Spec.Deny.Logins, traits, t.Login) {
			return Decision{
				Reason: fmt.Sprintf("login %q is denied on node %q", t.Login, node),
				Detail: fmt.Sprintf("role %q: deny.logins contains %q", r.Metadata.Name, t.Login),
			}
		}
		if matchLabels(r.Spec.Deny.NodeLabels, traits, t.Labels) {
			return Decision{
				Reason: fmt.Sprintf("access to node %q is denied", node),
				Detail: fmt.Sprintf("role %q: deny.node_labels match node %q", r.Metadata.Name, node),
			}
		}
	}
	labelsAllowedBy := ""
	for _, r := range req.Roles {
		if r == nil || !matchLabels(r.Spec.Allow.NodeLabels, traits, t.Labels) {
			continue
		}
		if valuesContain(r.Spec.Allow.Logins, traits, t.Login) {
			return Decision{
				Allowed: true,
				Reason:  fmt.Sprintf("login %q allowed on node %q", t.Login, node),
				Detail:  fmt.Sprintf("allowed by role %q", r.Metadata.Name),
				Options: MergeOptions(req.Roles),
			}
		}
		if labelsAllowedBy == "" {
			labelsAllowedBy = r.Metadata.Name
		}
	}
	names := roleNames(req.Roles)
	if labelsAllowedBy != "" {
		return Decision{
			Reason: fmt.Sprintf("login %q is not allowed on node %q by your roles", t.Login, node),
			Detail: fmt.Sprintf("role %q matches the node but no role matching the node allows login %q (roles: %s)",
				labelsAllowedBy, t.Login, names),
		}
	}
	notAllowed.Detail = fmt.Sprintf("no role's allow.node_labels match node %q (roles: %s)", node, names)
	return notAllowed
}

func hasRole(roles []*Role) bool {
	for _, r := range roles {
		if r != nil {
			return true
		}
	}
	return false
}

func roleNames(roles []*Role) string {
	var b strings.Builder
	for _, r := range roles {
		if r == nil {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(r.Metadata.Name)
	}
	return b.String()
}

// NodeAllowed reports whether some role's allow.node_labels select the node
// and no role's deny.node_labels do. Logins are ignored; it answers "may this
// user see the node" for listings.
func NodeAllowed(roles []*Role, traits map[string][]string, t Target) bool {
	allowed := false
	for _, r := range roles {
		if r == nil {
			continue
		}
		if matchLabels(r.Spec.Deny.NodeLabels, traits, t.Labels) {
			return false
		}
		if !allowed && matchLabels(r.Spec.Allow.NodeLabels, traits, t.Labels) {
			allowed = true
		}
	}
	return allowed
}

// AllowedLogins returns the logins the roles allow (templates expanded)
// minus those any role denies, in first-seen order. It is the set of
// principals for a user certificate.
func AllowedLogins(roles []*Role, traits map[string][]string) []string {
	var allow, deny []string
	for _, r := range roles {
		if r == nil {
			continue
		}
		allow = append(allow, r.Spec.Allow.Logins...)
		deny = append(deny, r.Spec.Deny.Logins...)
	}
	denied := make(map[string]struct{})
	for _, l := range ExpandTemplates(deny, traits) {
		denied[l] = struct{}{}
	}
	out := []string{}
	for _, l := range ExpandTemplates(allow, traits) {
		if _, no := denied[l]; !no {
			out = append(out, l)
		}
	}
	return out
}

// MergeOptions merges the options of all roles, most restrictive first:
// MaxSessionTTL is the smallest one set (DefaultSessionTTL if none is), and a
// boolean is false if any role sets it false. Unset booleans default to
// PermitPTY and FileTransfer true, PortForwarding and ForwardAgent false.
func MergeOptions(roles []*Role) EffectiveOptions {
	var ttl, idle time.Duration
	var pf, ft, pty, fa tri
	record, lockMode := "", ""
	recordInput, disconnect := false, true
	disconnectSet, allOff := false, true
	for _, r := range roles {
		if r == nil {
			continue
		}
		o := r.Spec.Options
		if d := time.Duration(o.MaxSessionTTL); d > 0 && (ttl == 0 || d < ttl) {
			ttl = d
		}
		if d := time.Duration(o.ClientIdleTimeout); d > 0 && (idle == 0 || d < idle) {
			idle = d
		}
		pf.merge(o.PortForwarding)
		ft.merge(o.FileTransfer)
		pty.merge(o.PermitPTY)
		fa.merge(o.ForwardAgent)
		record = stricterRecord(record, o.RecordSession)
		if o.LockMode == LockStrict {
			lockMode = LockStrict
		}
		if o.RecordInput != nil && *o.RecordInput {
			recordInput = true
		}
		// Disconnecting at expiry is on unless every role that says
		// anything turns it off.
		if o.DisconnectExpiredCert != nil {
			disconnectSet = true
			allOff = allOff && !*o.DisconnectExpiredCert
		}
	}
	if disconnectSet && allOff {
		disconnect = false
	}
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	if record == "" {
		record = RecordBestEffort
	}
	if lockMode == "" {
		lockMode = LockBestEffort
	}
	return EffectiveOptions{
		MaxSessionTTL:         ttl,
		PortForwarding:        pf.value(false),
		FileTransfer:          ft.value(true),
		PermitPTY:             pty.value(true),
		ForwardAgent:          fa.value(false),
		RecordSession:         record,
		RecordInput:           recordInput,
		DisconnectExpiredCert: disconnect,
		ClientIdleTimeout:     idle,
		LockMode:              lockMode,
	}
}

// stricterRecord returns the stricter of two record modes: strict, then
// best_effort, then off ("" is unset).
func stricterRecord(a, b string) string {
	rank := map[string]int{"": 0, RecordOff: 1, RecordBestEffort: 2, RecordStrict: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// tri folds optional booleans: any false wins, else any true, else unset.
type tri struct{ set, val bool }

func (t *tri) merge(b *bool) {
	if b == nil {
		return
	}
	if !t.set {
		t.set, t.val = true, *b
		return
	}
	t.val = t.val && *b
}

func (t tri) value(def bool) bool {
	if !t.set {
		return def
	}
	return t.val
}
