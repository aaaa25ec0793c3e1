package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"time"
)

// VerifyResult is the outcome of checking a store's hash chain.
type VerifyResult struct {
	// OK is true when every event checked is intact and in place.
	OK bool `json:"ok"`
	// Checked counts the events whose hashes were recomputed.
	Checked int64 `json:"checked"`
	// FirstBad names the first event found altered, removed or out of
	// order; nil when OK.
	FirstBad *BadEvent `json:"first_bad,omitempty"`
	// Last is the last event checked (where the chain ends).
	Last ChainPos `json:"last"`
	// SignaturesChecked tells whether checkpoint signatures were checked
	// (public keys were given).
	SignaturesChecked bool `json:"signatures_checked"`
	// Checkpoints counts the signed checkpoints verified.
	Checkpoints int64 `json:"checkpoints"`
	// Signed is the last event a verified checkpoint signs (seq 0: none),
	// SignedAt that checkpoint's time and Interval the checkpoint interval
	// it states. Events after Signed are protected by the chain alone.
	Signed   ChainPos      `json:"signed"`
	SignedAt time.Time     `json:"signed_at,omitzero"`
	Interval time.Duration `json:"interval,omitempty"`
	// Warnings are findings that are not proof of tampering, such as
	// events older than the checkpoint interval that no checkpoint signs.
	Warnings []string `json:"warnings,omitempty"`
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

// Signatures tracks the signed checkpoints met while a chain is walked,
// and says what the end of the walk leaves unsigned. The SQLite store and
// ChainVerifier share it.
type Signatures struct {
	Keys []ed25519.PublicKey
	// unsigned counts the events after the last checkpoint; first and
	// last are the earliest and latest times that auth gave them (a
	// node's events, which carry fields.node_id, have the node's clock).
	unsigned    int64
	first, last time.Time
}

// Event notes an intact event, named name, of time t, found right after
// the event (prevSeq, prevHash); authTime tells whether t is auth's clock.
// The event is decoded (decode) only if it is a checkpoint, whose
// signature is then checked. It returns why the event is bad, or "".
func (s *Signatures) Event(res *VerifyResult, name string, t time.Time, authTime bool, prevSeq int64, prevHash []byte,
	decode func() (Event, error)) string {
	if name == Checkpoint && len(s.Keys) > 0 {
		ev, err := decode()
		if err != nil {
			return "checkpoint undecodable: " + err.Error()
		}
		ci, err := CheckCheckpoint(ev, prevSeq, prevHash, s.Keys)
		if err != nil {
			return err.Error()
		}
		res.Checkpoints++
		res.Signed = ChainPos{Seq: ci.SignedSeq, Hash: hex.EncodeToString(ci.SignedHash)}
		res.SignedAt, res.Interval = ci.Time, ci.Interval
		// The checkpoint itself is signed by the next one, but nothing
		// after it is needed to trust what it signs.
		s.unsigned, s.first, s.last = 0, time.Time{}, time.Time{}
		return ""
	}
	s.unsigned++
	if authTime {
		if s.first.IsZero() || t.Before(s.first) {
			s.first = t
		}
		if t.After(s.last) {
			s.last = t
		}
	}
	return ""
}

// Finish adds the warning about the unsigned end of an intact chain: the
// events after the last checkpoint reach, by auth's clock, more than two
// checkpoint intervals past it (the interval the last checkpoint states,
// else DefaultCheckpointInterval); or, with no checkpoint at all, span more
// than that. Auth signs a checkpoint every interval while there is
// something new, so an honest log is never further behind than one.
func (s *Signatures) Finish(res *VerifyResult) {
	res.SignaturesChecked = len(s.Keys) > 0
	if len(s.Keys) == 0 || s.unsigned == 0 || s.last.IsZero() {
		return
	}
	interval := res.Interval
	if interval <= 0 {
		interval = DefaultCheckpointInterval
	}
	from := s.first
	if res.Checkpoints > 0 {
		from = res.SignedAt
	}
	if s.last.Sub(from) <= 2*interval {
		return
	}
	span := fmt.Sprintf("(%s to %s)", s.first.UTC().Format(time.RFC3339), s.last.UTC().Format(time.RFC3339))
	if res.Checkpoints == 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf(
			"no signed checkpoint: none of the %d events %s is protected against a rewrite of the whole log", s.unsigned, span))
		return
	}
	res.Warnings = append(res.Warnings, fmt.Sprintf(
		"the last %d events %s are signed by no checkpoint, the last of which is from %s, though one is written every %s: "+
			"later checkpoints removed, or auth stopped signing (see its log)",
		s.unsigned, span, res.SignedAt.UTC().Format(time.RFC3339), interval))
}

// ChainVerifier checks a log given event by event in seq order, such as an
// exported JSON-lines file (the audit sink's, or `warden audit search -o
// json`): every hash is recomputed, every event must follow the one before
// it, and with Keys every checkpoint's signature is checked. The first
// event's prev_hash is taken as given (a file may start after retention or
// at any seq).
type ChainVerifier struct {
	sig     Signatures
	res     VerifyResult
	started bool
	done    bool
	lastSeq int64
	prev    []byte
}

// NewChainVerifier returns a verifier checking checkpoints with keys (none:
// the chain only).
func NewChainVerifier(keys []ed25519.PublicKey) *ChainVerifier {
	return &ChainVerifier{sig: Signatures{Keys: keys}}
}

// Add checks the next event; after the first bad one it returns that one
// and checks nothing more.
func (v *ChainVerifier) Add(ev Event) *BadEvent {
	if v.done {
		return v.res.FirstBad
	}
	bad := func(format string, args ...any) *BadEvent {
		v.done = true
		v.res.FirstBad = &BadEvent{Seq: ev.Seq, ID: ev.ID, Reason: fmt.Sprintf(format, args...)}
		return v.res.FirstBad
	}
	v.res.Checked++
	prev, err := hex.DecodeString(ev.PrevHash)
	if err != nil {
		return bad("prev_hash is not hex")
	}
	if !v.started {
		v.started, v.lastSeq, v.prev = true, ev.Seq-1, prev
	}
	switch {
	case ev.Seq != v.lastSeq+1:
		return bad("expected seq %d: events removed, reordered or renumbered", v.lastSeq+1)
	case !bytes.Equal(prev, v.prev):
		return bad("does not follow the event before it (seq %d): prev_hash altered or events removed", v.lastSeq)
	}
	want, err := HashEvent(ev.PrevHash, ev)
	if err != nil {
		return bad("%v", err)
	}
	if want != ev.Hash {
		return bad("event altered: its body no longer matches its hash")
	}
	hash, _ := hex.DecodeString(ev.Hash)
	_, fromNode := ev.Fields["node_id"]
	if reason := v.sig.Event(&v.res, ev.Event, ev.Time, !fromNode, v.lastSeq, v.prev,
		func() (Event, error) { return ev, nil }); reason != "" {
		return bad("%s", reason)
	}
	v.lastSeq, v.prev = ev.Seq, hash
	v.res.Last = ChainPos{Seq: ev.Seq, Hash: ev.Hash}
	return nil
}

// Result is the outcome so far.
func (v *ChainVerifier) Result() VerifyResult {
	res := v.res
	res.OK = res.FirstBad == nil
	if res.OK {
		v.sig.Finish(&res)
	} else {
		res.SignaturesChecked = len(v.sig.Keys) > 0
	}
	return res
}
