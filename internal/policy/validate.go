package policy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
)

// MaxSessionTTLLimit is the largest max_session_ttl a role may set.
const MaxSessionTTLLimit = 30 * time.Hour

var roleNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// ValidRoleName reports whether name is acceptable as a role name.
func ValidRoleName(name string) bool { return roleNameRE.MatchString(name) }

// Validate checks a role for errors an administrator should fix before the
// role is stored. An empty version is accepted as "v1". It does not modify r.
// Errors name the offending field, e.g. `spec.allow.node_labels["env"]: ...`.
func (r *Role) Validate() error {
	if r == nil {
		return errors.New("role is nil")
	}
	if err := r.validate(); err != nil {
		if r.Metadata.Name != "" && roleNameRE.MatchString(r.Metadata.Name) {
			return fmt.Errorf("role %q: %w", r.Metadata.Name, err)
		}
		return fmt.Errorf("role: %w", err)
	}
	return nil
}

func (r *Role) validate() error {
	if r.Kind != KindRole {
		return fmt.Errorf("kind: must be %q, got %q", KindRole, r.Kind)
	}
	if r.Version != "" && r.Version != VersionV1 {
		return fmt.Errorf("version: unsupported version %q (want %q)", r.Version, VersionV1)
	}
	if !roleNameRE.MatchString(r.Metadata.Name) {
		return fmt.Errorf("metadata.name: %q is not a valid role name (1-64 of letters, digits, . _ -, starting with a letter or digit)", r.Metadata.Name)
	}
	if err := r.Spec.Options.validate(); err != nil {
		return fmt.Errorf("spec.options.%w", err)
	}
	if err := r.Spec.Allow.validate(); err != nil {
		return fmt.Errorf("spec.allow.%w", err)
	}
	if err := r.Spec.Deny.validate(); err != nil {
		return fmt.Errorf("spec.deny.%w", err)
	}
	return nil
}

func (o *RoleOptions) validate() error {
	d := time.Duration(o.MaxSessionTTL)
	if d < 0 {
		return fmt.Errorf("max_session_ttl: must not be negative, got %s", d)
	}
	if d > MaxSessionTTLLimit {
		return fmt.Errorf("max_session_ttl: %s is longer than the limit of %s", d, MaxSessionTTLLimit)
	}
	switch o.RecordSession {
	case "", RecordOff, RecordBestEffort, RecordStrict:
	default:
		return fmt.Errorf("record_session: must be off, best_effort or strict, got %q", o.RecordSession)
	}
	switch o.LockMode {
	case "", LockBestEffort, LockStrict:
	default:
		return fmt.Errorf("lock_mode: must be strict or best_effort, got %q", o.LockMode)
	}
	if o.ClientIdleTimeout < 0 {
		return fmt.Errorf("client_idle_timeout: must not be negative")
	}
	if w := time.Duration(o.SessionMFAWindow); w < 0 || w > MaxSessionMFAWindow {
		return fmt.Errorf("session_mfa_window: must be between 0 and %s, got %s", MaxSessionMFAWindow, w)
	}
	if o.SessionMFAMaxSessions < 0 || o.SessionMFAMaxSessions > MaxSessionMFASessions {
		return fmt.Errorf("session_mfa_max_sessions: must be between 0 and %d, got %d", MaxSessionMFASessions, o.SessionMFAMaxSessions)
	}
	if o.SessionMFAMaxSessions > 0 && o.SessionMFAWindow == 0 {
		return fmt.Errorf("session_mfa_max_sessions: needs session_mfa_window")
	}
	return nil
}

func (r *RequestConditions) validate() error {
	if r == nil {
		return nil
	}
	for i, p := range r.Roles {
		if p == "" || len(p) > 128 {
			return fmt.Errorf("request.roles[%d]: invalid role pattern %q", i, p)
		}
	}
	if r.MaxDuration < 0 || time.Duration(r.MaxDuration) > 7*24*time.Hour {
		return fmt.Errorf("request.max_duration: must be between 0 and 168h")
	}
	if r.Thresholds.Approve < 0 || r.Thresholds.Deny < 0 || r.Thresholds.Approve > 10 || r.Thresholds.Deny > 10 {
		return fmt.Errorf("request.thresholds: approve and deny must be between 0 and 10")
	}
	return nil
}

func (c *Conditions) validate() error {
	if err := c.Request.validate(); err != nil {
		return err
	}
	for i, l := range c.Logins {
		if err := validateLogin(l); err != nil {
			return fmt.Errorf("logins[%d]: %w", i, err)
		}
	}
	keys := make([]string, 0, len(c.NodeLabels))
	for k := range c.NodeLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same error every time
	for _, k := range keys {
		if err := validateLabel(k, c.NodeLabels[k]); err != nil {
			return fmt.Errorf("node_labels[%q]: %w", k, err)
		}
	}
	for i, rule := range c.Rules {
		if err := rule.validate(); err != nil {
			return fmt.Errorf("rules[%d].%w", i, err)
		}
	}
	for i, j := range c.JoinSessions {
		if err := j.validate(); err != nil {
			return fmt.Errorf("join_sessions[%d].%w", i, err)
		}
	}
	return c.validateKube()
}

func (j JoinSessions) validate() error {
	if len(j.Roles) == 0 {
		return errors.New(`roles: name the roles whose sessions may be joined ("*" for any)`)
	}
	for _, r := range j.Roles {
		if _, err := path.Match(r, ""); err != nil || r == "" {
			return fmt.Errorf("roles: invalid pattern %q", r)
		}
	}
	if len(j.Modes) == 0 {
		return fmt.Errorf("modes: name at least one of %q, %q", JoinObserver, JoinPeer)
	}
	for _, m := range j.Modes {
		if m != JoinObserver && m != JoinPeer {
			return fmt.Errorf("modes: unknown mode %q (use %q or %q)", m, JoinObserver, JoinPeer)
		}
	}
	return nil
}

func validateLogin(l string) error {
	if l == "" {
		return errors.New("empty login")
	}
	if len(l) > 255 {
		return errors.New("login longer than 255 bytes")
	}
	literal := l
	if t, err := parseTemplate(l); err == nil {
		literal = t.prefix + t.suffix
	} else if !errors.Is(err, errNoTemplate) {
		return err
	}
	if strings.ContainsFunc(literal, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == ',' }) {
		return fmt.Errorf("login %q contains whitespace, a control character or a comma", l)
	}
	return nil
}

func validateLabel(key string, values Strings) error {
	if key == "" {
		return errors.New("empty label key")
	}
	if len(values) == 0 {
		return errors.New("no values (use \"*\" to match any value)")
	}
	if key == Wildcard {
		if len(values) != 1 || values[0] != Wildcard {
			return errors.New(`the wildcard key "*" only accepts the value "*"`)
		}
		return nil
	}
	for _, v := range values {
		if v == "" {
			return errors.New("empty value")
		}
		if _, err := parseTemplate(v); err == nil {
			continue
		} else if !errors.Is(err, errNoTemplate) {
			return err
		}
		if m := compileMatcher(v); m.err != nil {
			return m.err
		}
	}
	return nil
}

func (r *Rule) validate() error {
	if len(r.Resources) == 0 {
		return errors.New("resources: at least one resource (or \"*\") is required")
	}
	if len(r.Verbs) == 0 {
		return errors.New("verbs: at least one verb (or \"*\") is required")
	}
	for _, res := range r.Resources {
		if res != Wildcard && !slices.Contains(Resources(), res) {
			return fmt.Errorf("resources: unknown resource %q (want one of %s or \"*\")", res, strings.Join(Resources(), ", "))
		}
	}
	for _, v := range r.Verbs {
		if v != Wildcard && !slices.Contains(Verbs(), v) {
			return fmt.Errorf("verbs: unknown verb %q (want one of %s or \"*\")", v, strings.Join(Verbs(), ", "))
		}
	}
	return nil
}
