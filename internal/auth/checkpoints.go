package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"

	"github.com/warden-sh/warden/internal/audit"
)

// checkpointStore is an audit store that appends signed checkpoints (the
// SQLite audit log).
type checkpointStore interface {
	AppendCheckpoint(ctx context.Context, after audit.ChainPos,
		sign func(seq int64, hash []byte) (audit.Event, error)) (audit.Event, *audit.BadEvent, error)
	LastCheckpoint(ctx context.Context) (audit.Event, bool, error)
}

// AuditPublicKey is the key that verifies the audit log's checkpoints, and
// its id; nil when auth signs none.
func (s *Server) AuditPublicKey() (ed25519.PublicKey, string) {
	if s.cfg.AuditKey == nil {
		return nil, ""
	}
	pub := s.cfg.AuditKey.Public().(ed25519.PublicKey)
	return pub, audit.KeyID(pub)
}

// ExportAuditKey returns the PEM public key that verifies the audit log's
// checkpoints offline (warden audit verify --pubkey), and its id.
func (s *Server) ExportAuditKey(ctx context.Context, c Caller) ([]byte, string, error) {
	if err := s.authorize(c, "ExportAuditKey"); err != nil {
		return nil, "", err
	}
	pub, id := s.AuditPublicKey()
	if pub == nil {
		return nil, "", errors.New("this auth service signs no audit checkpoints")
	}
	pemKey, err := audit.MarshalPublicKey(pub)
	return pemKey, id, err
}

// checkpoint signs the audit log's chain up to its last event (see
// docs/audit-events.md, "Signed checkpoints"). Before signing, the store
// checks that the events since the last checkpoint this process trusts
// still chain to it; if they do not, the break is recorded as an
// audit.chain_broken event (and logged), and the chain is signed from there
// on: what earlier checkpoints signed stays checkable by them, and what
// follows is protected again.
func (s *Server) checkpoint(ctx context.Context) {
	st, ok := s.cfg.Audit.(checkpointStore)
	if !ok || s.cfg.AuditKey == nil {
		return
	}
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	if !s.cpLoaded {
		s.cpPos, s.cpLoaded = s.trustedCheckpoint(ctx, st), true
	}
	interval := s.cfg.CheckpointInterval
	sign := func(seq int64, hash []byte) (audit.Event, error) {
		return audit.SignCheckpoint(s.cfg.AuditKey, seq, hash, s.now(), interval), nil
	}
	ev, bad, err := st.AppendCheckpoint(ctx, s.cpPos, sign)
	if err == nil && bad != nil {
		s.log.Error("audit log tampered with since the last signed checkpoint; run warden audit verify",
			"checkpoint_seq", s.cpPos.Seq, "first_bad", bad.String())
		s.emit(ctx, audit.Event{Event: audit.ChainBroken, Error: bad.String(), Fields: map[string]any{
			"bad_seq": bad.Seq, "checkpoint_seq": s.cpPos.Seq, "checkpoint_hash": s.cpPos.Hash}})
		ev, _, err = st.AppendCheckpoint(ctx, audit.ChainPos{}, sign)
	}
	if err != nil {
		s.log.Error("audit checkpoint failed", "err", err)
		return
	}
	if ev.Seq > 0 {
		s.cpPos = audit.ChainPos{Seq: ev.Seq, Hash: ev.Hash}
	}
}

// trustedCheckpoint is the position of the log's last checkpoint if it is
// intact and signed by this auth's key; else the zero position (the next
// checkpoint then signs the log as it is).
func (s *Server) trustedCheckpoint(ctx context.Context, st checkpointStore) audit.ChainPos {
	ev, ok, err := st.LastCheckpoint(ctx)
	if err != nil || !ok {
		return audit.ChainPos{}
	}
	pub, id := s.AuditPublicKey()
	prev, _ := hex.DecodeString(ev.PrevHash)
	hash, herr := audit.HashEvent(ev.PrevHash, ev)
	ci, cerr := audit.CheckCheckpoint(ev, ev.Seq-1, prev, []ed25519.PublicKey{pub})
	switch {
	case herr != nil || hash != ev.Hash:
		s.log.Error("the last audit checkpoint was altered; run warden audit verify", "seq", ev.Seq)
	case cerr != nil && ci.KeyID != "" && ci.KeyID != id:
		s.log.Warn("the audit log's last checkpoint was signed by another key: the signing key changed",
			"seq", ev.Seq, "key_id", ci.KeyID, "current_key_id", id)
	case cerr != nil:
		s.log.Error("the last audit checkpoint does not verify; run warden audit verify", "seq", ev.Seq, "err", cerr)
	default:
		return audit.ChainPos{Seq: ev.Seq, Hash: ev.Hash}
	}
	return audit.ChainPos{}
}
