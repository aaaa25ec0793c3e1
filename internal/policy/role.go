// Package policy holds roles and the one decision function that every service
// (node, proxy, the access report) calls to decide SSH access.
//
// A role is data: allow and deny conditions (OS logins, node labels, resource
// rules for admin operations) and session options. Deny always wins. Access
// to a node needs a single role that allows both the login and the node's
// labels; options of all the user's roles merge with the most restrictive
// value winning. Everything here is plain Go with no I/O, so the same
// evaluation runs on the proxy, on nodes and in reports.
package policy

import (
	"encoding/json"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// KindRole is the only valid value of Role.Kind.
const KindRole = "role"

// VersionV1 is the current (and default) role version.
const VersionV1 = "v1"

// Role is a YAML/JSON resource of kind "role".
type Role struct {
	Kind     string   `json:"kind" yaml:"kind"`
	Version  string   `json:"version,omitempty" yaml:"version,omitempty"`
	Metadata Metadata `json:"metadata" yaml:"metadata"`
	Spec     RoleSpec `json:"spec" yaml:"spec"`
}

// Metadata names a resource.
type Metadata struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
}

// RoleSpec is the body of a role.
type RoleSpec struct {
	Options RoleOptions `json:"options,omitempty,omitzero" yaml:"options,omitempty"`
	Allow   Conditions  `json:"allow,omitempty,omitzero" yaml:"allow,omitempty"`
	Deny    Conditions  `json:"deny,omitempty,omitzero" yaml:"deny,omitempty"`
}

// Conditions are the allow or deny rules of a role.
type Conditions struct {
	// Logins are OS logins; may contain templates such as {{internal.logins}}.
	Logins Strings `json:"logins,omitempty" yaml:"logins,omitempty"`
	// NodeLabels maps a label key (or "*") to allowed values. A value is an
	// exact string, "*", a glob (contains *, ? or [), or a regex (^...$).
	// A value may also be a template such as {{external.env}}; its expansion
	// is matched exactly (trait values are data, never patterns).
	NodeLabels Labels `json:"node_labels,omitempty" yaml:"node_labels,omitempty"`
	// Rules grant (or, under deny, refuse) verbs on API resources such as
	// "user" or "audit". "*" matches any resource or verb.
	Rules []Rule `json:"rules,omitempty" yaml:"rules,omitempty"`
	// Request says which roles holders may request just in time (allow
	// only).
	Request *RequestConditions `json:"request,omitempty" yaml:"request,omitempty"`
	// ReviewRequests says which requested roles holders may review.
	ReviewRequests *ReviewConditions `json:"review_requests,omitempty" yaml:"review_requests,omitempty"`
	// JoinSessions says whose live sessions holders may join, and how
	// (see CanJoin).
	JoinSessions []JoinSessions `json:"join_sessions,omitempty" yaml:"join_sessions,omitempty"`
	// Kubernetes: which clusters (labels), as whom (groups and users to
	// impersonate; templates allowed) and which resources (see kube.go).
	KubernetesGroups    Strings              `json:"kubernetes_groups,omitempty" yaml:"kubernetes_groups,omitempty"`
	KubernetesUsers     Strings              `json:"kubernetes_users,omitempty" yaml:"kubernetes_users,omitempty"`
	KubernetesLabels    Labels               `json:"kubernetes_labels,omitempty" yaml:"kubernetes_labels,omitempty"`
	KubernetesResources []KubernetesResource `json:"kubernetes_resources,omitempty" yaml:"kubernetes_resources,omitempty"`
}

// JoinSessions lets holders join live sessions of users holding one of
// Roles (globs allowed), in one of Modes.
type JoinSessions struct {
	Roles Strings `json:"roles" yaml:"roles"`
	Modes Strings `json:"modes" yaml:"modes"`
}

// Join modes: an observer sees the session's output; a peer also types.
const (
	JoinObserver = "observer"
	JoinPeer     = "peer"
)

// RequestConditions govern access requests.
type RequestConditions struct {
	// Roles that may be requested; globs allowed.
	Roles Strings `json:"roles,omitempty" yaml:"roles,omitempty"`
	// MaxDuration caps how long approved access lasts (default 8h).
	MaxDuration Duration `json:"max_duration,omitempty" yaml:"max_duration,omitempty"`
	// ReasonRequired refuses requests without a reason.
	ReasonRequired bool `json:"reason_required,omitempty" yaml:"reason_required,omitempty"`
	// Thresholds: approvals needed and denials that deny (default 1 and 1).
	Thresholds Thresholds `json:"thresholds,omitempty,omitzero" yaml:"thresholds,omitempty"`
	// SuggestedReviewers are notified with the request.
	SuggestedReviewers Strings `json:"suggested_reviewers,omitempty" yaml:"suggested_reviewers,omitempty"`
}

// Thresholds of an access request.
type Thresholds struct {
	Approve int `json:"approve,omitempty" yaml:"approve,omitempty"`
	Deny    int `json:"deny,omitempty" yaml:"deny,omitempty"`
}

// ReviewConditions govern who reviews which requests.
type ReviewConditions struct {
	// Roles whose requests holders may review; globs allowed.
	Roles Strings `json:"roles,omitempty" yaml:"roles,omitempty"`
}

// Rule allows or denies Verbs on Resources.
type Rule struct {
	Resources Strings `json:"resources" yaml:"resources"`
	Verbs     Strings `json:"verbs" yaml:"verbs"`
}

// Resources named in rules.
const (
	ResourceUser          = "user"
	ResourceRole          = "role"
	ResourceToken         = "token"
	ResourceNode          = "node"
	ResourceAudit         = "audit"
	ResourceSession       = "session"
	ResourceRecording     = "recording"
	ResourceLock          = "lock"
	ResourceAccessRequest = "access_request"
	ResourceCluster       = "cluster"
	ResourceConnector     = "connector"
)

// Verbs named in rules.
const (
	VerbList   = "list"
	VerbRead   = "read"
	VerbCreate = "create"
	VerbUpdate = "update"
	VerbDelete = "delete"
)

// Wildcard matches any resource, verb, label key or label value.
const Wildcard = "*"

// Resources returns every resource name a rule may use (besides "*").
func Resources() []string {
	return []string{ResourceUser, ResourceRole, ResourceToken, ResourceNode, ResourceAudit,
		ResourceSession, ResourceRecording, ResourceLock, ResourceAccessRequest, ResourceCluster, ResourceConnector}
}

// Verbs returns every verb a rule may use (besides "*").
func Verbs() []string {
	return []string{VerbList, VerbRead, VerbCreate, VerbUpdate, VerbDelete}
}

// Labels maps a label key to one or more value matchers. In YAML a single
// value may be written as a scalar.
type Labels map[string]Strings

// Strings is a list that also unmarshals from a single string.
type Strings []string

// UnmarshalJSON accepts a string or an array of strings.
func (s *Strings) UnmarshalJSON(data []byte) error {
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		*s = Strings{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return fmt.Errorf("expected a string or a list of strings: %w", err)
	}
	*s = many
	return nil
}

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (s *Strings) UnmarshalYAML(n *yaml.Node) error {
	v, err := decodeStrings(n)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// RoleOptions are session options; when several roles apply they are merged
// with the most restrictive value winning.
type RoleOptions struct {
	MaxSessionTTL  Duration `json:"max_session_ttl,omitempty" yaml:"max_session_ttl,omitempty"`
	PortForwarding *bool    `json:"port_forwarding,omitempty" yaml:"port_forwarding,omitempty"`
	FileTransfer   *bool    `json:"file_transfer,omitempty" yaml:"file_transfer,omitempty"`
	PermitPTY      *bool    `json:"permit_pty,omitempty" yaml:"permit_pty,omitempty"`
	ForwardAgent   *bool    `json:"forward_agent,omitempty" yaml:"forward_agent,omitempty"`
	// RecordSession is off, best_effort (default) or strict: strict refuses
	// or ends a session whose recording cannot be guaranteed.
	RecordSession string `json:"record_session,omitempty" yaml:"record_session,omitempty"`
	// RecordInput also records what the user types.
	RecordInput *bool `json:"record_input,omitempty" yaml:"record_input,omitempty"`
	// DisconnectExpiredCert ends sessions when the certificate expires
	// (default true).
	DisconnectExpiredCert *bool `json:"disconnect_expired_cert,omitempty" yaml:"disconnect_expired_cert,omitempty"`
	// ClientIdleTimeout ends sessions idle for longer (0 = never).
	ClientIdleTimeout Duration `json:"client_idle_timeout,omitempty" yaml:"client_idle_timeout,omitempty"`
	// LockMode is what a node does when it cannot reach auth to learn the
	// current locks: best_effort (default) keeps the last known set; strict
	// refuses new sessions and ends live ones after a bounded staleness.
	LockMode string `json:"lock_mode,omitempty" yaml:"lock_mode,omitempty"`
	// RequireSessionMFA makes every new session to the nodes this role
	// covers (its allow.node_labels; every node when it has none) need a
	// fresh MFA check: a certificate for that one node and login, valid
	// about a minute, used once (see SessionMFARequired).
	RequireSessionMFA *bool `json:"require_session_mfa,omitempty" yaml:"require_session_mfa,omitempty"`
	// SessionMFAWindow lets one MFA check cover a batch: the certificate
	// is valid this long (at most MaxSessionMFAWindow) for the nodes chosen
	// up front, and SessionMFAMaxSessions sessions.
	SessionMFAWindow Duration `json:"session_mfa_window,omitempty" yaml:"session_mfa_window,omitempty"`
	// SessionMFAMaxSessions bounds the sessions one batch check opens
	// (default 1 session per node chosen, at most MaxSessionMFASessions).
	SessionMFAMaxSessions int `json:"session_mfa_max_sessions,omitempty" yaml:"session_mfa_max_sessions,omitempty"`
}

// Record modes and lock modes.
const (
	RecordOff        = "off"
	RecordBestEffort = "best_effort"
	RecordStrict     = "strict"
	LockBestEffort   = "best_effort"
	LockStrict       = "strict"
)

// Duration is a time.Duration written as "8h", "30m" in YAML/JSON.
type Duration time.Duration

// String formats the duration like time.Duration ("8h0m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string such as "8h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "8h" or "30m".
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"8h\": %w", err)
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration as a string such as "8h0m0s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string such as "8h" or "30m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := decodeDuration(n)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. \"8h\" or \"30m\")", s)
	}
	return Duration(v), nil
}

// Bool returns a pointer to b, for building RoleOptions in code.
func Bool(b bool) *bool { return &b }
