// Package storage defines Warden's state store: a small key-value store with
// revisions, compare-and-swap, TTL and watch, shared by all domain state.
// Drivers (sqlite, postgres) implement Backend and pass storagetest.
package storage

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound is returned when a key does not exist (or has expired).
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists is returned by Create when the key exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrCompareFailed is returned by CompareAndSwap when the revision differs.
	ErrCompareFailed = errors.New("compare failed: item was modified concurrently")
)

// Item is one stored value. Keys are slash separated paths such as
// "/users/alice". Revision is assigned by the backend on every write and is
// strictly increasing across the whole store. A zero Expires means no TTL.
type Item struct {
	Key      string
	Value    []byte
	Revision int64
	Expires  time.Time
}

// EventType tells what happened to a key.
type EventType int

const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is a change delivered by Watch. For EventDelete only Key and
// Revision of Item are meaningful.
type Event struct {
	Type EventType
	Item Item
}

// Backend is implemented by every storage driver.
type Backend interface {
	// Get returns the item or ErrNotFound.
	Get(ctx context.Context, key string) (Item, error)
	// Create stores the item only if the key does not exist (ErrAlreadyExists).
	Create(ctx context.Context, it Item) (Item, error)
	// Put creates or replaces the item.
	Put(ctx context.Context, it Item) (Item, error)
	// CompareAndSwap replaces the item only if its current revision is rev
	// (ErrCompareFailed otherwise, ErrNotFound if missing).
	CompareAndSwap(ctx context.Context, rev int64, it Item) (Item, error)
	// Delete removes the key (ErrNotFound if missing).
	Delete(ctx context.Context, key string) error
	// List returns live items whose key starts with prefix, ordered by key.
	// limit <= 0 means no limit.
	List(ctx context.Context, prefix string, limit int) ([]Item, error)
	// Watch delivers changes to keys under prefix (or under any of more),
	// in commit order, until ctx ends. The channel is closed when the
	// watch ends; a consumer that falls too far behind has its channel
	// closed and must re-list and re-watch.
	Watch(ctx context.Context, prefix string, more ...string) (<-chan Event, error)
	// Close releases resources.
	Close() error
}

// Key joins parts into a storage key: Key("users", "alice") == "/users/alice".
func Key(parts ...string) string {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, '/')
		b = append(b, p...)
	}
	return string(b)
}
