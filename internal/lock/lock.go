// Package lock holds locks: a lock cuts off a user, role, login, node,
// access request or MFA device at once, new connections and live sessions
// alike. A lock may apply only to certificates issued up to an instant:
// that is how removing or resetting a user voids the certificates they
// hold while letting a new signup log in. A Set answers "is this session
// locked?" with map lookups, so the check can sit on every hot path.
package lock

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Target says what a lock applies to. Exactly one field is set.
type Target struct {
	User      string `json:"user,omitempty"`
	Role      string `json:"role,omitempty"`
	Login     string `json:"login,omitempty"`
	Node      string `json:"node,omitempty"`
	Request   string `json:"access_request,omitempty"`
	MFADevice string `json:"mfa_device,omitempty"`
	// Session is one live session (its id, as `warden sessions ls` and
	// the web UI's live sessions show it): locking it ends that session.
	Session string `json:"session,omitempty"`
}

// Lock is one lock.
type Lock struct {
	ID      string `json:"id"`
	Target  Target `json:"target"`
	Message string `json:"message,omitempty"`
	// Expires is when the lock stops applying; zero means until removed.
	Expires   time.Time `json:"expires,omitzero"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	// IssuedNotAfter, when set, limits the lock to certificates issued at
	// or before it (by auth's clock, which both come from): it voids the
	// certificates a user held when they were removed, reset or lost a
	// role. Subjects without an issue time (logins, issuance) are not
	// matched.
	IssuedNotAfter time.Time `json:"issued_not_after,omitzero"`
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._@:-]{0,127}$`)

// Validate checks the target (exactly one kind, sane names) and message.
func (t Target) Validate() error {
	kinds := 0
	for _, v := range []string{t.User, t.Role, t.Login, t.Node, t.Request, t.MFADevice, t.Session} {
		if v == "" {
			continue
		}
		kinds++
		if !nameRe.MatchString(v) {
			return fmt.Errorf("lock target %q is not a valid name", v)
		}
	}
	if kinds != 1 {
		return errors.New("a lock needs exactly one target: --user, --role, --login, --node, --request, --mfa-device or --session")
	}
	return nil
}

// String renders the target as kind=value.
func (t Target) String() string {
	switch {
	case t.User != "":
		return "user=" + t.User
	case t.Role != "":
		return "role=" + t.Role
	case t.Login != "":
		return "login=" + t.Login
	case t.Node != "":
		return "node=" + t.Node
	case t.Request != "":
		return "access_request=" + t.Request
	case t.MFADevice != "":
		return "mfa_device=" + t.MFADevice
	case t.Session != "":
		return "session=" + t.Session
	}
	return "nothing"
}

// Validate checks a lock.
func (l *Lock) Validate() error {
	if err := l.Target.Validate(); err != nil {
		return err
	}
	if len(l.Message) > 1024 {
		return errors.New("lock message is longer than 1024 bytes")
	}
	for _, r := range l.Message {
		if r < 0x20 && r != '\t' {
			return errors.New("lock message has control characters")
		}
	}
	return nil
}

// InForce reports whether the lock applies at now.
func (l *Lock) InForce(now time.Time) bool { return l.Expires.IsZero() || now.Before(l.Expires) }

// CoversIssued reports whether the lock applies to a certificate issued
// at issued (zero: not a certificate), whatever it locks.
func (l *Lock) CoversIssued(issued time.Time) bool { return l.coversIssued(issued) }

// coversIssued reports whether the lock applies to a certificate issued at
// issued (zero: not a certificate).
func (l *Lock) coversIssued(issued time.Time) bool {
	return l.IssuedNotAfter.IsZero() || !issued.IsZero() && !issued.After(l.IssuedNotAfter)
}

// UserMessage is what a locked-out user sees.
func (l *Lock) UserMessage() string {
	msg := "access is locked (" + l.Target.String() + ")"
	if l.Message != "" {
		msg += ": " + l.Message
	}
	return msg
}

// NewID returns a random lock id.
func NewID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Subject is who and what a session or request involves.
type Subject struct {
	User       string
	Roles      []string
	Login      string
	Node       string // node name
	NodeID     string
	Requests   []string
	MFADevices []string
	// Sessions are the live sessions of a connection being re-checked.
	Sessions []string
	// Issued is when the subject's certificate was issued; zero for
	// subjects without one (a login being checked before issuance).
	Issued time.Time
}

// Set is a concurrency-safe set of locks indexed by target.
type Set struct {
	mu    sync.RWMutex
	byID  map[string]*Lock
	index map[string][]*Lock // "kind=value" -> locks
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{byID: map[string]*Lock{}, index: map[string][]*Lock{}} }

// Replace swaps in a full snapshot.
func (s *Set) Replace(locks []*Lock) {
	byID := make(map[string]*Lock, len(locks))
	index := make(map[string][]*Lock, len(locks))
	for _, l := range locks {
		byID[l.ID] = l
		k := l.Target.String()
		index[k] = append(index[k], l)
	}
	s.mu.Lock()
	s.byID, s.index = byID, index
	s.mu.Unlock()
}

// Put adds or replaces one lock.
func (s *Set) Put(l *Lock) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(l.ID)
	s.byID[l.ID] = l
	k := l.Target.String()
	s.index[k] = append(s.index[k], l)
}

// Delete removes a lock by id.
func (s *Set) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(id)
}

func (s *Set) removeLocked(id string) {
	old, ok := s.byID[id]
	if !ok {
		return
	}
	delete(s.byID, id)
	k := old.Target.String()
	list := s.index[k]
	for i, l := range list {
		if l.ID == id {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.index, k)
	} else {
		s.index[k] = list
	}
}

// Len returns the number of locks (in force or not).
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byID)
}

// List returns all locks sorted by creation time.
func (s *Set) List() []*Lock {
	s.mu.RLock()
	out := make([]*Lock, 0, len(s.byID))
	for _, l := range s.byID {
		out = append(out, l)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// Matching returns every lock in force at now whose target matches sub,
// whatever the certificate's issue time (sub.Issued is ignored): a caller
// checking many certificates of one subject (a KRL build) looks the locks
// up once and tests each certificate with CoversIssued.
func (s *Set) Matching(sub Subject, now time.Time) []*Lock {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.byID) == 0 {
		return nil
	}
	var out []*Lock
	add := func(kind, v string) {
		if v == "" {
			return
		}
		for _, l := range s.index[kind+"="+v] {
			if l.InForce(now) {
				out = append(out, l)
			}
		}
	}
	add("user", sub.User)
	for _, r := range sub.Roles {
		add("role", r)
	}
	add("login", sub.Login)
	add("node", sub.Node)
	add("node", sub.NodeID)
	for _, r := range sub.Requests {
		add("access_request", r)
	}
	for _, d := range sub.MFADevices {
		add("mfa_device", d)
	}
	for _, id := range sub.Sessions {
		add("session", id)
	}
	return out
}

// Check returns the first lock in force at now that matches sub, or nil.
func (s *Set) Check(sub Subject, now time.Time) *Lock {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.byID) == 0 {
		return nil
	}
	try := func(kind, v string) *Lock {
		if v == "" {
			return nil
		}
		for _, l := range s.index[kind+"="+v] {
			if l.InForce(now) && l.coversIssued(sub.Issued) {
				return l
			}
		}
		return nil
	}
	if l := try("user", sub.User); l != nil {
		return l
	}
	for _, r := range sub.Roles {
		if l := try("role", r); l != nil {
			return l
		}
	}
	if l := try("login", sub.Login); l != nil {
		return l
	}
	if l := try("node", sub.Node); l != nil {
		return l
	}
	if l := try("node", sub.NodeID); l != nil {
		return l
	}
	for _, r := range sub.Requests {
		if l := try("access_request", r); l != nil {
			return l
		}
	}
	for _, d := range sub.MFADevices {
		if l := try("mfa_device", d); l != nil {
			return l
		}
	}
	for _, id := range sub.Sessions {
		if l := try("session", id); l != nil {
			return l
		}
	}
	return nil
}

// Matches reports whether l applies to sub (ignoring its expiry).
func (l *Lock) Matches(sub Subject) bool {
	if !l.coversIssued(sub.Issued) {
		return false
	}
	t := l.Target
	switch {
	case t.User != "":
		return t.User == sub.User
	case t.Role != "":
		return contains(sub.Roles, t.Role)
	case t.Login != "":
		return t.Login == sub.Login
	case t.Node != "":
		return t.Node == sub.Node || t.Node == sub.NodeID
	case t.Request != "":
		return contains(sub.Requests, t.Request)
	case t.MFADevice != "":
		return contains(sub.MFADevices, t.MFADevice)
	case t.Session != "":
		return contains(sub.Sessions, t.Session)
	}
	return false
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// ParseTarget parses "kind=value" (as printed by Target.String).
func ParseTarget(s string) (Target, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return Target{}, fmt.Errorf("lock target %q must look like kind=value", s)
	}
	var t Target
	switch k {
	case "user":
		t.User = v
	case "role":
		t.Role = v
	case "login":
		t.Login = v
	case "node":
		t.Node = v
	case "access_request", "request":
		t.Request = v
	case "mfa_device":
		t.MFADevice = v
	case "session":
		t.Session = v
	default:
		return Target{}, fmt.Errorf("unknown lock target kind %q", k)
	}
	return t, t.Validate()
}
