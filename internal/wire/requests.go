package wire

import "time"

// CreateAccessRequest is the input of CreateAccessRequest.
type CreateAccessRequest struct {
	Roles     []string      `json:"roles"`
	Reason    string        `json:"reason,omitempty"`
	Duration  time.Duration `json:"duration,omitempty"`
	Reviewers []string      `json:"reviewers,omitempty"`
}
