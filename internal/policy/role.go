// Package policy holds roles and the one decision function that every service
// (node, proxy, the access report) calls to decide SSH access.
package policy

import "time"

// Role is a YAML/JSON resource of kind "role".
type Role struct {
	Kind     string   `json:"kind"`
	Version  string   `json:"version,omitempty"`
	Metadata Metadata `json:"metadata"`
	Spec     RoleSpec `json:"spec"`
}

// Metadata names a resource.
type Metadata struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// RoleSpec is the body of a role.
type RoleSpec struct {
	Options RoleOptions `json:"options,omitempty"`
	Allow   Conditions  `json:"allow,omitempty"`
	Deny    Conditions  `json:"deny,omitempty"`
}

// Conditions are the allow or deny rules of a role.
type Conditions struct {
	// Logins are OS logins; may contain templates such as {{internal.logins}}.
	Logins []string `json:"logins,omitempty"`
	// NodeLabels maps a label key (or "*") to allowed values. A value is an
	// exact string, "*", a glob (contains * or ?), or a regex (^...$).
	NodeLabels Labels `json:"node_labels,omitempty"`
}

// Labels maps a label key to one or more value matchers. In YAML a single
// value may be written as a scalar.
type Labels map[string]Strings

// Strings is a list that also unmarshals from a single string.
type Strings []string

// RoleOptions are session options; when several roles apply they are merged
// with the most restrictive value winning.
type RoleOptions struct {
	MaxSessionTTL  Duration `json:"max_session_ttl,omitempty"`
	PortForwarding *bool    `json:"port_forwarding,omitempty"`
	FileTransfer   *bool    `json:"file_transfer,omitempty"`
	PermitPTY      *bool    `json:"permit_pty,omitempty"`
	ForwardAgent   *bool    `json:"forward_agent,omitempty"`
}

// Duration is a time.Duration written as "8h", "30m" in YAML/JSON.
type Duration time.Duration
