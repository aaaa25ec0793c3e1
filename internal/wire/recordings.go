package wire

import "time"

// Recording check statuses.
const (
	RecordingIntact  = "intact"
	RecordingAltered = "altered"
	RecordingMissing = "missing"
	RecordingLive    = "recording"
)

// RecordingMatch is one search hit.
type RecordingMatch struct {
	SessionID string        `json:"session_id"`
	User      string        `json:"user"`
	Node      string        `json:"node"`
	Start     time.Time     `json:"start"`
	Offset    time.Duration `json:"offset"`
	Type      string        `json:"type"` // o: output, i: typed input
	Line      string        `json:"line"`
}

// RecordingCheck is the outcome of checking one recording.
type RecordingCheck struct {
	SessionID string `json:"session_id"`
	// Status is "intact", "altered" (bytes or records changed), "missing"
	// (completed, not deleted by retention, and gone), or "recording"
	// (still being recorded: nothing to check against yet).
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}
