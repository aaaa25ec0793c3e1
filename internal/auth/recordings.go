package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/warden-sh/warden/internal/asciicast"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage"
)

// EventRecordingComplete is audited when a recording is closed.
const EventRecordingComplete = "recording.complete"

func (s *Server) recordings() (*recording.Store, error) {
	if s.cfg.Recordings == nil {
		return nil, errors.New("this auth service keeps no recordings")
	}
	return s.cfg.Recordings, nil
}

func recordingErr(err error) error {
	var oe *recording.OffsetError
	switch {
	case errors.As(err, &oe):
		return err
	case errors.Is(err, recording.ErrNotOwner):
		return fmt.Errorf("%w: %v", ErrAccessDenied, err)
	case errors.Is(err, recording.ErrNotFound):
		return fmt.Errorf("recording %w", storage.ErrNotFound)
	case errors.Is(err, recording.ErrMismatch):
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return err
}

// AppendRecording stores a chunk of a node's session recording. Only nodes
// upload, and only for their own sessions (the store enforces ownership).
// Chunks are hashed as they arrive (recording.Store.Append).
func (s *Server) AppendRecording(ctx context.Context, c Caller, meta recording.Meta, offset int64, data []byte) (int64, error) {
	return s.appendRecording(ctx, c, meta, offset, data, (*recording.Store).Append)
}

// AppendLocalRecording is AppendRecording for the node in auth's own
// process (all-in-one), which hashed the recording itself: auth does not
// hash it a second time (recording.Store.AppendTrusted). Never for calls
// from the network.
func (s *Server) AppendLocalRecording(ctx context.Context, c Caller, meta recording.Meta, offset int64, data []byte) (int64, error) {
	return s.appendRecording(ctx, c, meta, offset, data, (*recording.Store).AppendTrusted)
}

func (s *Server) appendRecording(ctx context.Context, c Caller, meta recording.Meta, offset int64, data []byte,
	appendTo func(*recording.Store, recording.Meta, string, int64, []byte) (int64, error)) (int64, error) {
	if c.Kind != KindNode {
		return 0, denied("only nodes upload recordings")
	}
	st, err := s.recordings()
	if err != nil {
		return 0, err
	}
	if !recording.ValidSessionID(meta.SessionID) {
		return 0, badRequest("invalid session id")
	}
	if len(data) > recording.MaxChunk {
		return 0, badRequest("recording chunk larger than %d bytes", recording.MaxChunk)
	}
	reg, err := s.GetNodeRegistration(ctx, c.NodeID)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	// The node speaks only for itself.
	meta.Node, meta.NodeID = reg.Name, reg.ID
	n, err := appendTo(st, meta, c.NodeID, offset, data)
	return n, recordingErr(err)
}

// CompleteRecording closes a recording with its length and SHA-256.
func (s *Server) CompleteRecording(ctx context.Context, c Caller, sessionID string, length int64, sha string, interrupted bool) error {
	if c.Kind != KindNode {
		return denied("only nodes complete recordings")
	}
	st, err := s.recordings()
	if err != nil {
		return err
	}
	if err := st.Complete(sessionID, c.NodeID, length, sha, interrupted); err != nil {
		return recordingErr(err)
	}
	info, _ := st.Stat(sessionID)
	ev := audit.Event{Event: EventRecordingComplete, SessionID: sessionID, Success: true,
		Fields: map[string]any{"length": length, "sha256": sha, "interrupted": interrupted}}
	if info != nil {
		ev.User, ev.Login, ev.Node = info.User, info.Login, info.Node
	}
	s.emit(ctx, ev)
	return nil
}

// RecordingFilter selects recordings.
type RecordingFilter struct {
	User  string
	Node  string
	Since time.Time
}

// ListRecordings lists stored recordings, newest first.
func (s *Server) ListRecordings(ctx context.Context, c Caller, f RecordingFilter) ([]recording.Info, error) {
	if err := s.authorize(ctx, c, "recording", "list"); err != nil {
		return nil, err
	}
	st, err := s.recordings()
	if err != nil {
		return nil, err
	}
	all, err := st.List()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, in := range all {
		if (f.User == "" || in.User == f.User) && (f.Node == "" || in.Node == f.Node || in.NodeID == f.Node) &&
			(f.Since.IsZero() || !in.Start.Before(f.Since)) {
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	return out, nil
}

// OpenRecording returns a recording's asciicast bytes.
func (s *Server) OpenRecording(ctx context.Context, c Caller, id string) (io.ReadCloser, *recording.Info, error) {
	if err := s.authorize(ctx, c, "recording", "read"); err != nil {
		return nil, nil, err
	}
	st, err := s.recordings()
	if err != nil {
		return nil, nil, err
	}
	if !recording.ValidSessionID(id) {
		return nil, nil, badRequest("invalid session id")
	}
	rc, info, err := st.Open(id)
	return rc, info, recordingErr(err)
}

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

// SearchRecordings finds sessions whose output or typed input contain text.
func (s *Server) SearchRecordings(ctx context.Context, c Caller, text string, limit int) ([]RecordingMatch, error) {
	if len(text) == 0 || len(text) > 256 {
		return nil, badRequest("search text must be 1 to 256 bytes")
	}
	infos, err := s.ListRecordings(ctx, c, RecordingFilter{})
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var out []RecordingMatch
	for _, in := range infos {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		rc, _, err := s.cfg.Recordings.Open(in.SessionID)
		if err != nil {
			continue
		}
		r, err := asciicast.NewReader(rc)
		if err != nil {
			rc.Close()
			continue
		}
		matches, _ := asciicast.Search(r, text, limit-len(out))
		rc.Close()
		for _, m := range matches {
			out = append(out, RecordingMatch{SessionID: in.SessionID, User: in.User, Node: in.Node, Start: in.Start,
				Offset: m.Offset, Type: m.Type, Line: m.Line})
		}
		if len(out) >= limit {
			break
		}
	}
	return out, nil
}
