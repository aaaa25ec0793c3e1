package wire

import (
	"time"

	"github.com/warden-sh/warden/internal/lock"
)

// CreateLockRequest creates a lock.
type CreateLockRequest struct {
	Target  lock.Target   `json:"target"`
	Message string        `json:"message,omitempty"`
	TTL     time.Duration `json:"ttl,omitempty"`
	Expires time.Time     `json:"expires,omitzero"`
}

// CreateLockResult is the new lock plus warnings (e.g. unknown target).
type CreateLockResult struct {
	Lock     *lock.Lock `json:"lock"`
	Warnings []string   `json:"warnings,omitempty"`
}
