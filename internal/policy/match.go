package policy

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

// matcherKind says how a label value pattern is interpreted.
type matcherKind uint8

const (
	matchExact matcherKind = iota
	matchAny
	matchGlob
	matchRegex
	matchInvalid // never matches; Validate reports these
)

// matcher is a compiled label value pattern.
type matcher struct {
	kind    matcherKind
	pattern string
	re      *regexp.Regexp
	err     error
}

func (m *matcher) match(v string) bool {
	switch m.kind {
	case matchExact:
		return v == m.pattern
	case matchAny:
		return true
	case matchGlob:
		ok, err := path.Match(m.pattern, v)
		return err == nil && ok
	case matchRegex:
		return m.re.MatchString(v)
	}
	return false
}

func isRegexPattern(p string) bool {
	return len(p) >= 2 && p[0] == '^' && p[len(p)-1] == '$'
}

func isGlobPattern(p string) bool { return strings.ContainsAny(p, "*?[") }

func compileMatcher(p string) *matcher {
	switch {
	case p == Wildcard:
		return &matcher{kind: matchAny, pattern: p}
	case isRegexPattern(p):
		re, err := regexp.Compile(p)
		if err != nil {
			return &matcher{kind: matchInvalid, pattern: p, err: fmt.Errorf("invalid regex %q: %w", p, err)}
		}
		return &matcher{kind: matchRegex, pattern: p, re: re}
	case isGlobPattern(p):
		// path.Match checks the whole pattern's syntax even on a mismatch.
		if _, err := path.Match(p, ""); err != nil {
			return &matcher{kind: matchInvalid, pattern: p, err: fmt.Errorf("invalid glob %q: %w", p, err)}
		}
		return &matcher{kind: matchGlob, pattern: p}
	}
	return &matcher{kind: matchExact, pattern: p}
}

// matcherCache holds compiled patterns keyed by their source text. Roles are
// few and change rarely, so the set of patterns is small; the bound only
// guards against unbounded growth from unusual callers (it starts over).
type matcherCache struct {
	m    sync.Map // string -> *matcher
	size atomic.Int64
	max  int64
}

var matchers = &matcherCache{max: 10000}

func (c *matcherCache) get(p string) *matcher {
	if v, ok := c.m.Load(p); ok {
		return v.(*matcher)
	}
	m := compileMatcher(p)
	if c.size.Add(1) > c.max {
		c.m.Clear()
		c.size.Store(1)
	}
	if v, loaded := c.m.LoadOrStore(p, m); loaded {
		return v.(*matcher)
	}
	return m
}

// matchValue matches one label value pattern (possibly a template) against
// a node's label value.
func matchValue(pattern string, traits map[string][]string, v string) bool {
	if strings.Contains(pattern, "{{") || strings.Contains(pattern, "}}") {
		// Expansions match exactly: a trait from an identity provider must
		// not be able to smuggle in a wildcard.
		return valuesContain([]string{pattern}, traits, v)
	}
	return matchers.get(pattern).match(v)
}

// matchLabels reports whether a role's node_labels select a node with the
// given labels. Every key must match; a key "*" with value "*" matches any
// node, even one without labels. Empty selectors match nothing.
func matchLabels(sel Labels, traits map[string][]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for key, patterns := range sel {
		if key == Wildcard {
			if !containsString(patterns, Wildcard) {
				// Validate rejects this; at runtime it selects nothing.
				return false
			}
			continue
		}
		v, ok := labels[key]
		if !ok {
			return false
		}
		matched := false
		for _, p := range patterns {
			if matchValue(p, traits, v) {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	return true
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
