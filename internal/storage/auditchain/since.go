package auditchain

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"github.com/warden-sh/warden/internal/audit"
)

// SinceReader is what CheckSince reads, each in the driver's SQL. Errors
// are returned as the driver has them: CheckSince wraps them.
type SinceReader interface {
	// RetentionCheckpoint returns the latest retention checkpoint's seq
	// and hash, or 0 and nil when there is none.
	RetentionCheckpoint() (seq int64, hash []byte, err error)
	// HashAt returns the hash of the event at seq; found is false when
	// there is no such event.
	HashAt(seq int64) (hash []byte, found bool, err error)
	// EventsAfter calls fn with each event after seq in seq order until fn
	// returns false.
	EventsAfter(seq int64, fn func(seq int64, id string, body, prevHash, hash []byte) bool) error
}

// CheckSince checks that the event at pos still has pos's hash and that
// every later event chains to it, and returns the last event checked. An
// event at pos deleted by retention is fine: the chain is then checked
// from the retention checkpoint.
func CheckSince(r SinceReader, pos audit.ChainPos) (audit.ChainPos, *audit.BadEvent, error) {
	want, err := hex.DecodeString(pos.Hash)
	if err != nil {
		return pos, nil, fmt.Errorf("audit checkpoint: bad position hash: %w", err)
	}
	cpSeq, cpHash, err := r.RetentionCheckpoint()
	if err != nil {
		return pos, nil, fmt.Errorf("audit checkpoint: read retention checkpoint: %w", err)
	}
	start, prev := pos.Seq, want
	if cpSeq >= pos.Seq {
		start, prev = cpSeq, cpHash
	} else {
		have, found, err := r.HashAt(pos.Seq)
		switch {
		case err != nil:
			return pos, nil, fmt.Errorf("audit checkpoint: read seq %d: %w", pos.Seq, err)
		case !found:
			return pos, &audit.BadEvent{Seq: pos.Seq, Reason: "the event of the last signed checkpoint was removed"}, nil
		case !bytes.Equal(have, want):
			return pos, &audit.BadEvent{Seq: pos.Seq, Reason: "the event of the last signed checkpoint has another hash: log rewritten"}, nil
		}
	}
	last := start
	var bad *audit.BadEvent
	err = r.EventsAfter(start, func(seq int64, id string, body, prevHash, hash []byte) bool {
		fail := func(reason string) bool {
			bad = &audit.BadEvent{Seq: seq, ID: id, Reason: reason}
			return false
		}
		switch {
		case seq != last+1:
			return fail(fmt.Sprintf("expected seq %d: events removed or renumbered", last+1))
		case hash == nil:
			return fail("event has no hash")
		case !bytes.Equal(prevHash, prev):
			return fail("does not follow the event before it")
		case !bytes.Equal(audit.ChainHash(prev, body), hash):
			return fail("event altered: its body no longer matches its hash")
		}
		last, prev = seq, hash
		return true
	})
	switch {
	case err != nil:
		return pos, nil, fmt.Errorf("audit checkpoint: read events: %w", err)
	case bad != nil:
		return pos, bad, nil
	}
	return audit.ChainPos{Seq: last, Hash: hex.EncodeToString(prev)}, nil, nil
}
