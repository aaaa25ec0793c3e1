package audit

import "fmt"

// VerifyResult is the outcome of checking a store's hash chain.
type VerifyResult struct {
	// OK is true when every event checked is intact and in place.
	OK bool `json:"ok"`
	// Checked counts the events whose hashes were recomputed.
	Checked int64 `json:"checked"`
	// FirstBad names the first event found altered, removed or out of
	// order; nil when OK.
	FirstBad *BadEvent `json:"first_bad,omitempty"`
}

// BadEvent is where a chain check failed.
type BadEvent struct {
	// Seq and ID are those of the event at fault or, for a removal, of the
	// event after the gap (ID is empty when no event follows it).
	Seq    int64  `json:"seq"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

func (b *BadEvent) String() string {
	if b.ID == "" {
		return fmt.Sprintf("seq %d: %s", b.Seq, b.Reason)
	}
	return fmt.Sprintf("seq %d (id %s): %s", b.Seq, b.ID, b.Reason)
}
