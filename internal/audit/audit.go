// Package audit defines Warden's audit events: JSON objects with stable field
// names, emitted by every service for every security-relevant action.
package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"time"
)

// Event is one audit record. Fields holds event-specific data.
type Event struct {
	Event      string    `json:"event"`
	Code       string    `json:"code,omitempty"`
	Time       time.Time `json:"time"`
	ID         string    `json:"id"`
	Seq        int64     `json:"seq,omitempty"`
	User       string    `json:"user,omitempty"`
	Login      string    `json:"login,omitempty"`
	Node       string    `json:"node,omitempty"`
	SessionID  string    `json:"session_id,omitempty"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Success    bool      `json:"success"`
	Error      string    `json:"error,omitempty"`
	Fields     Fields    `json:"fields,omitempty"`
	// PrevHash and Hash chain the event to the log (hex SHA-256, set by the
	// store; see ChainHash). Neither is part of the canonical encoding.
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

// Fields is an event's free-form data. Decoded from JSON, its numbers are
// json.Number, written back exactly as they were read: a float64 would
// round integers beyond 2^53, such as certificate serials.
type Fields map[string]any

// UnmarshalJSON decodes fields keeping numbers exact (json.Number).
func (f *Fields) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return err
	}
	*f = m
	return nil
}

// Emitter records events.
type Emitter interface {
	Emit(ctx context.Context, ev Event) error
}

// BatchEmitter stores several events in one transaction: all or none.
type BatchEmitter interface {
	EmitBatch(ctx context.Context, evs []Event) error
}

// EmitAll emits evs in one batch when e supports it, else one by one.
func EmitAll(ctx context.Context, e Emitter, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	if b, ok := e.(BatchEmitter); ok {
		return b.EmitBatch(ctx, evs)
	}
	for _, ev := range evs {
		if err := e.Emit(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// Search limits: a query without a limit returns at most DefaultLimit
// events, and none returns more than MaxLimit.
const (
	DefaultLimit = 1000
	MaxLimit     = 10000
)

// Query selects events. Zero fields do not filter.
type Query struct {
	Type      string
	User      string
	Node      string
	SessionID string
	Since     time.Time
	Until     time.Time
	// Limit is the most events to return (see EffectiveLimit).
	Limit int
	// AfterSeq returns events with Seq > AfterSeq (paging).
	AfterSeq int64
	// BeforeSeq returns events with Seq < BeforeSeq (paging newest first).
	BeforeSeq int64
	// Newest returns the newest events first (Seq descending).
	Newest bool
	// Text matches events whose JSON encoding contains it, ignoring case.
	Text string
}

// EffectiveLimit is the most events a search for q returns: Limit, or
// DefaultLimit when it is not positive, and never more than MaxLimit.
func (q Query) EffectiveLimit() int {
	if q.Limit <= 0 {
		return DefaultLimit
	}
	return min(q.Limit, MaxLimit)
}

// Store persists and searches events.
type Store interface {
	Emitter
	Search(ctx context.Context, q Query) ([]Event, error)
}

// Subscriber streams events with Seq > afterSeq: the backlog, then live
// events, until ctx ends.
type Subscriber interface {
	Subscribe(ctx context.Context, afterSeq int64) (<-chan Event, error)
}

// Verifier checks the hash chain of a whole log and, given public keys,
// the signatures of its checkpoints.
type Verifier interface {
	Verify(ctx context.Context, keys ...ed25519.PublicKey) (VerifyResult, error)
}

// Retainer deletes events older than t (leaving a checkpoint the chain
// continues from).
type Retainer interface {
	DeleteBefore(ctx context.Context, t time.Time) (int64, error)
}
