package auth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"time"

	"github.com/warden-sh/warden/internal/audit"
)

// VerifyAudit checks the audit log's hash chain and the signatures of its
// checkpoints with auth's own key. (Checking with a public key kept
// elsewhere, without trusting auth, is warden audit verify --pubkey on a
// copy of the log.)
func (s *Server) VerifyAudit(ctx context.Context, c Caller) (*audit.VerifyResult, error) {
	if err := s.authorize(c, "VerifyAudit"); err != nil {
		return nil, err
	}
	v, ok := s.cfg.Audit.(audit.Verifier)
	if !ok {
		return nil, errors.New("this audit store cannot be verified")
	}
	var keys []ed25519.PublicKey
	if pub, _ := s.AuditPublicKey(); pub != nil {
		keys = append(keys, pub)
	}
	res, err := v.Verify(ctx, keys...)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// SubscribeAudit streams audit events after a sequence number.
func (s *Server) SubscribeAudit(ctx context.Context, c Caller, afterSeq int64) (<-chan audit.Event, error) {
	if err := s.authorize(c, "SubscribeAudit"); err != nil {
		return nil, err
	}
	sub, ok := s.cfg.Audit.(audit.Subscriber)
	if !ok {
		return nil, errors.New("this audit store cannot be followed")
	}
	return sub.Subscribe(ctx, afterSeq)
}

// applyRetention deletes events and recordings older than the configured
// retention. The deletions are themselves audited.
func (s *Server) applyRetention(ctx context.Context) {
	now := s.now()
	if d := s.cfg.EventRetention; d > 0 {
		if r, ok := s.cfg.Audit.(audit.Retainer); ok {
			if _, err := r.DeleteBefore(ctx, now.Add(-d)); err != nil {
				s.log.Error("audit retention failed", "err", err)
			}
		}
	}
	if d := s.cfg.RecordingRetention; d > 0 && s.cfg.Recordings != nil {
		infos, err := s.cfg.Recordings.List()
		if err != nil {
			return
		}
		var deleted []string
		for _, in := range infos {
			if in.Complete && in.Start.Before(now.Add(-d)) {
				if err := s.cfg.Recordings.Delete(in.SessionID); err == nil {
					deleted = append(deleted, in.SessionID)
				}
			}
		}
		if len(deleted) > 0 {
			s.emit(ctx, audit.Event{Event: audit.RecordingRetention, Success: true,
				Fields: map[string]any{"deleted": len(deleted), "sessions": deleted, "older_than": now.Add(-d).UTC().Format(time.RFC3339)}})
		}
	}
}
