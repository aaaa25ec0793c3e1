package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/asciicast"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

func (s *Server) recordings() (*recording.Store, error) {
	if s.cfg.Recordings == nil {
		return nil, errors.New("this auth service keeps no recordings")
	}
	return s.cfg.Recordings, nil
}

func recordingErr(err error) error {
	var oe *recording.OffsetError
	var ae *recording.AlteredError
	switch {
	case err == nil, errors.As(err, &oe):
		return err
	case errors.Is(err, recording.ErrNotOwner):
		return fmt.Errorf("%w: %v", ErrAccessDenied, err)
	case errors.Is(err, recording.ErrMissing):
		return withKind(err, storage.ErrNotFound)
	case errors.Is(err, recording.ErrNotFound):
		return fmt.Errorf("recording %w", storage.ErrNotFound)
	case errors.Is(err, recording.ErrMismatch):
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	case errors.Is(err, recording.ErrCompleted), errors.As(err, &ae):
		return withKind(err, ErrConflict)
	case errors.Is(err, recording.ErrUnknownSession):
		return withKind(err, ErrAccessDenied)
	}
	return err
}

// AppendRecording stores a chunk of a node's session recording. Only nodes
// upload, and only for their own sessions (the store enforces ownership).
// Chunks are hashed as they arrive (recording.Store.Append).
func (s *Server) AppendRecording(ctx context.Context, c Caller, meta recording.Meta, offset int64, data []byte) (int64, error) {
	if err := s.authorize(c, "AppendRecording"); err != nil {
		return 0, err
	}
	return s.appendRecording(ctx, c, meta, offset, data, (*recording.Store).Append)
}

// AppendLocalRecording is AppendRecording for the node in auth's own
// process (all-in-one), which hashed the recording itself: auth does not
// hash it a second time (recording.Store.AppendTrusted). Never for calls
// from the network.
func (s *Server) AppendLocalRecording(ctx context.Context, c Caller, meta recording.Meta, offset int64, data []byte) (int64, error) {
	if err := s.authorize(c, "AppendLocalRecording"); err != nil {
		return 0, err
	}
	return s.appendRecording(ctx, c, meta, offset, data, (*recording.Store).AppendTrusted)
}

func (s *Server) appendRecording(ctx context.Context, c Caller, meta recording.Meta, offset int64, data []byte,
	appendTo func(*recording.Store, recording.Meta, string, int64, []byte) (int64, error)) (int64, error) {
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
	if _, err := st.Stat(meta.SessionID); errors.Is(err, recording.ErrNotFound) {
		// A new recording: only for a session this node told auth it
		// started, and as auth recorded it (user, login, start).
		started, err := s.sessionStartedBy(ctx, meta.SessionID, c.NodeID)
		if err != nil {
			return 0, err
		}
		if started == nil {
			msg := fmt.Sprintf("no session %s started by node %s: recording refused", meta.SessionID, reg.Name)
			s.emit(ctx, audit.Event{Event: audit.RecordingRefused, SessionID: meta.SessionID, Node: reg.Name, Error: msg,
				Fields: map[string]any{"node_id": c.NodeID, "offset": offset, "claimed_user": meta.User}})
			return 0, withKind(fmt.Errorf("%w: %s", recording.ErrUnknownSession, msg), ErrAccessDenied)
		}
		meta.User, meta.Login, meta.Start, meta.RemoteAddr = started.User, started.Login, started.Started, started.RemoteAddr
	}
	n, err := appendTo(st, meta, c.NodeID, offset, data)
	return n, recordingErr(err)
}

// sessionStartedBy returns auth's record of session id if node nodeID
// started it (its session.start, kept as a live session or in the audit
// log), or nil.
func (s *Server) sessionStartedBy(ctx context.Context, id, nodeID string) (*LiveSession, error) {
	var ls LiveSession
	switch err := s.getJSON(ctx, prefixSessions+id, &ls); {
	case err == nil && ls.NodeID == nodeID:
		return &ls, nil
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}
	evs, err := s.cfg.Audit.Search(ctx, audit.Query{Type: audit.SessionStart, SessionID: id, Limit: 100})
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		if n, _ := ev.Fields["node_id"].(string); ev.Success && n == nodeID {
			return &LiveSession{ID: id, User: ev.User, Login: ev.Login, NodeID: nodeID, RemoteAddr: ev.RemoteAddr, Started: ev.Time}, nil
		}
	}
	return nil, nil
}

// CompleteRecording closes a recording with its length and SHA-256.
func (s *Server) CompleteRecording(ctx context.Context, c Caller, sessionID string, length int64, sha string, interrupted bool) error {
	if err := s.authorize(c, "CompleteRecording"); err != nil {
		return err
	}
	st, err := s.recordings()
	if err != nil {
		return err
	}
	// Marking it complete and auditing the completion are one step for
	// the readers that find it complete (refAfterCompletion).
	defer s.completionLock(sessionID)()
	if err := st.Complete(sessionID, c.NodeID, length, sha, interrupted); err != nil {
		return recordingErr(err)
	}
	if s.markedComplete != nil {
		s.markedComplete(sessionID)
	}
	info, _ := st.Stat(sessionID)
	ev := audit.Event{Event: audit.RecordingComplete, SessionID: sessionID, Success: true, Time: s.now().UTC(),
		Fields: map[string]any{"length": length, "sha256": strings.ToLower(sha), "interrupted": interrupted}}
	if info != nil {
		ev.User, ev.Login, ev.Node = info.User, info.Login, info.Node
		if info.BlocksSHA256 != "" {
			ev.Fields["blocks_sha256"] = info.BlocksSHA256
		}
	}
	// Reading the recording checks it against this event: without it the
	// recording could not be read, so the node retries until it is stored.
	if err := s.cfg.Audit.Emit(ctx, ev); err != nil {
		return fmt.Errorf("record the completion of recording %s: %w", sessionID, err)
	}
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
	if err := s.authorize(c, "ListRecordings"); err != nil {
		return nil, err
	}
	return s.listRecordings(f)
}

// listRecordings lists stored recordings matching f, newest first.
func (s *Server) listRecordings(f RecordingFilter) ([]recording.Info, error) {
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

// RecordingStream is a recording being read. Its bytes are checked on
// their way through against the length and SHA-256 that the audit log's
// recording.complete event recorded: reading past the end of an altered
// recording fails with *recording.AlteredError (audited as
// recording.altered) instead of io.EOF. A recording still being recorded
// (no recording.complete yet) is served as it is, unchecked (Checked
// false).
type RecordingStream struct {
	Info    recording.Info
	Checked bool
	r       io.Reader
	c       *recording.CheckedReader // nil when not Checked
	closer  io.Closer
	altered func(error)
	once    sync.Once
}

func (r *RecordingStream) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.report(err)
	return n, err
}

func (r *RecordingStream) report(err error) {
	var ae *recording.AlteredError
	if errors.As(err, &ae) {
		r.once.Do(func() { r.altered(err) })
	}
}

// Finish reads what is left and returns the outcome of the check (nil:
// intact, or not checkable yet).
func (r *RecordingStream) Finish() error {
	if r.c == nil {
		return nil
	}
	err := r.c.Finish()
	r.report(err)
	return err
}

// Close closes the recording's file.
func (r *RecordingStream) Close() error { return r.closer.Close() }

// recordingRef is what the audit log recorded when a recording completed.
type recordingRef struct {
	length int64
	sha256 string
	// blocks is the root of its block hashes (recording.BlockSize), empty
	// for a recording completed before they were kept.
	blocks string
}

// recordingRefs reads the recording.complete events auth wrote (a node's
// forwarded events carry fields.node_id and are not taken) for session id,
// or for every session when id is empty. Two that disagree make the
// session's recording uncheckable: an *recording.AlteredError is kept for
// it in bad.
func (s *Server) recordingRefs(ctx context.Context, id string) (refs map[string]recordingRef, bad map[string]error, err error) {
	refs, bad = map[string]recordingRef{}, map[string]error{}
	q := audit.Query{Type: audit.RecordingComplete, SessionID: id, Limit: audit.MaxLimit}
	for {
		evs, err := s.cfg.Audit.Search(ctx, q)
		if err != nil {
			return nil, nil, fmt.Errorf("read recording.complete events: %w", err)
		}
		for _, ev := range evs {
			if _, fromNode := ev.Fields["node_id"]; fromNode || ev.SessionID == "" {
				continue
			}
			sha, _ := ev.Fields["sha256"].(string)
			length, lerr := int64Of(ev.Fields["length"])
			blocks, _ := ev.Fields["blocks_sha256"].(string)
			ref := recordingRef{length: length, sha256: strings.ToLower(sha), blocks: strings.ToLower(blocks)}
			if lerr != nil || len(ref.sha256) != 64 || (ref.blocks != "" && len(ref.blocks) != 64) {
				bad[ev.SessionID] = &recording.AlteredError{SessionID: ev.SessionID,
					Reason: fmt.Sprintf("its recording.complete event (seq %d) has no valid length and sha256", ev.Seq)}
				continue
			}
			if old, ok := refs[ev.SessionID]; ok && old != ref {
				bad[ev.SessionID] = &recording.AlteredError{SessionID: ev.SessionID,
					Reason: "the audit log records two different completions of it"}
			}
			refs[ev.SessionID] = ref
		}
		if len(evs) < q.EffectiveLimit() {
			return refs, bad, nil
		}
		q.AfterSeq = evs[len(evs)-1].Seq
	}
}

func int64Of(v any) (int64, error) {
	switch v := v.(type) {
	case float64:
		if v < 0 || v != float64(int64(v)) {
			return 0, fmt.Errorf("%v is not a length", v)
		}
		return int64(v), nil
	case json.Number:
		return v.Int64()
	case int64:
		return v, nil
	case int:
		return int64(v), nil
	}
	return 0, fmt.Errorf("%T is not a length", v)
}

// openChecked opens the recording of id for reading, checked against refs
// (see RecordingStream).
func (s *Server) openChecked(ctx context.Context, st *recording.Store, id string, refs map[string]recordingRef, bad map[string]error) (*RecordingStream, error) {
	if err := bad[id]; err != nil {
		s.recordingAltered(ctx, id, err)
		return nil, err
	}
	rc, info, err := st.Open(id)
	if err != nil {
		if errors.Is(err, recording.ErrMissing) {
			s.recordingAltered(ctx, id, err)
		}
		return nil, err
	}
	rs := &RecordingStream{Info: *info, r: rc, closer: rc, altered: func(err error) { s.recordingAltered(ctx, id, err) }}
	ref, ok := refs[id]
	if !ok && info.Complete {
		if ref, ok, err = s.refAfterCompletion(ctx, id); err != nil {
			rc.Close()
			return nil, err
		}
	}
	switch {
	case ok:
		rs.c = recording.NewCheckedReader(rc, id, ref.length, ref.sha256)
		rs.r, rs.Checked = rs.c, true
	case info.Complete:
		// Marked complete where it is stored, yet the audit log has no
		// completion to check it against.
		rc.Close()
		err := &recording.AlteredError{SessionID: id, Reason: "it is marked complete, but the audit log records no recording.complete for it"}
		s.recordingAltered(ctx, id, err)
		return nil, err
	}
	return rs, nil
}

// completionLock holds the completion of recording id (one of a few
// stripes of locks, by id) until the returned func is called.
func (s *Server) completionLock(id string) func() {
	h := fnv.New32a()
	h.Write([]byte(id))
	m := &s.completing[h.Sum32()%uint32(len(s.completing))]
	m.Lock()
	return m.Unlock
}

// refAfterCompletion looks up the recording.complete of id again once no
// completion of id is under way: a reader that found the recording marked
// complete before its completion was audited (the two are not one write)
// gets the event, not a false alarm.
func (s *Server) refAfterCompletion(ctx context.Context, id string) (recordingRef, bool, error) {
	s.completionLock(id)()
	refs, _, err := s.recordingRefs(ctx, id)
	if err != nil {
		return recordingRef{}, false, err
	}
	ref, ok := refs[id]
	return ref, ok, nil
}

// recordingAltered makes a failed check loud: logged and audited.
func (s *Server) recordingAltered(ctx context.Context, id string, err error) {
	s.log.Error("recording check failed", "session", id, "err", err)
	s.emit(ctx, audit.Event{Event: audit.RecordingAltered, SessionID: id, Error: err.Error()})
}

// recordingToRead finds the store of recording id, and the completions
// the audit log records for it (see recordingRefs), for a read.
func (s *Server) recordingToRead(ctx context.Context, id string) (*recording.Store, map[string]recordingRef, map[string]error, error) {
	st, err := s.recordings()
	if err != nil {
		return nil, nil, nil, err
	}
	if !recording.ValidSessionID(id) {
		return nil, nil, nil, badRequest("invalid session id")
	}
	refs, bad, err := s.recordingRefs(ctx, id)
	if err != nil {
		return nil, nil, nil, err
	}
	return st, refs, bad, nil
}

// OpenRecording returns a recording's asciicast bytes, checked as they are
// read (see RecordingStream).
func (s *Server) OpenRecording(ctx context.Context, c Caller, id string) (*RecordingStream, error) {
	if err := s.authorize(c, "OpenRecording"); err != nil {
		return nil, err
	}
	st, refs, bad, err := s.recordingToRead(ctx, id)
	if err != nil {
		return nil, err
	}
	rs, err := s.openChecked(context.WithoutCancel(ctx), st, id, refs, bad)
	return rs, recordingErr(err)
}

// RecordingCheck is wire.RecordingCheck: the API carries it.
type RecordingCheck = wire.RecordingCheck

// Recording check statuses (wire's).
const (
	RecordingIntact  = wire.RecordingIntact
	RecordingAltered = wire.RecordingAltered
	RecordingMissing = wire.RecordingMissing
	RecordingLive    = wire.RecordingLive
)

// VerifyRecordings checks the recordings of sessions ids (all when empty)
// against the audit log: every stored recording is read once and hashed,
// and every recording.complete without its recording (and not deleted by
// retention) is reported missing. Failures are audited.
func (s *Server) VerifyRecordings(ctx context.Context, c Caller, ids []string) ([]RecordingCheck, error) {
	if err := s.authorize(c, "VerifyRecordings"); err != nil {
		return nil, err
	}
	st, err := s.recordings()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if !recording.ValidSessionID(id) {
			return nil, badRequest("invalid session id %.80q", id)
		}
	}
	refs, bad, err := s.recordingRefs(ctx, "")
	if err != nil {
		return nil, err
	}
	deleted, err := s.deletedRecordings(ctx)
	if err != nil {
		return nil, err
	}
	all, err := st.List()
	if err != nil {
		return nil, err
	}
	want := func(id string) bool { return len(ids) == 0 || slices.Contains(ids, id) }
	var out []RecordingCheck
	stored := map[string]bool{}
	for _, in := range all {
		stored[in.SessionID] = true
		if !want(in.SessionID) {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		out = append(out, s.checkRecording(ctx, st, in.SessionID, refs, bad))
	}
	for id := range refs {
		if want(id) && !stored[id] && !deleted[id] {
			err := &recording.AlteredError{SessionID: id, Reason: "it completed, was not deleted by retention, and is gone"}
			s.recordingAltered(ctx, id, err)
			out = append(out, RecordingCheck{SessionID: id, Status: RecordingMissing, Error: err.Error()})
		}
	}
	for _, id := range ids {
		if _, known := refs[id]; !stored[id] && !known {
			return nil, fmt.Errorf("no recording of session %s: %w", id, storage.ErrNotFound)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SessionID < out[j].SessionID })
	return out, nil
}

func (s *Server) checkRecording(ctx context.Context, st *recording.Store, id string, refs map[string]recordingRef, bad map[string]error) RecordingCheck {
	rs, err := s.openChecked(ctx, st, id, refs, bad)
	if err == nil {
		defer rs.Close()
		if !rs.Checked {
			return RecordingCheck{SessionID: id, Status: RecordingLive}
		}
		err = rs.Finish()
	}
	var ae *recording.AlteredError
	switch {
	case err == nil:
		return RecordingCheck{SessionID: id, Status: RecordingIntact}
	case errors.Is(err, recording.ErrMissing):
		return RecordingCheck{SessionID: id, Status: RecordingMissing, Error: err.Error()}
	case errors.As(err, &ae):
		return RecordingCheck{SessionID: id, Status: RecordingAltered, Error: err.Error()}
	}
	return RecordingCheck{SessionID: id, Status: RecordingAltered, Error: "cannot read it: " + err.Error()}
}

// deletedRecordings is the set of sessions whose recordings retention
// deleted (recording.retention events).
func (s *Server) deletedRecordings(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	q := audit.Query{Type: audit.RecordingRetention, Limit: audit.MaxLimit}
	for {
		evs, err := s.cfg.Audit.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("read recording.retention events: %w", err)
		}
		for _, ev := range evs {
			if _, fromNode := ev.Fields["node_id"]; fromNode {
				continue
			}
			ids, _ := ev.Fields["sessions"].([]any)
			for _, id := range ids {
				if id, ok := id.(string); ok {
					out[id] = true
				}
			}
		}
		if len(evs) < q.EffectiveLimit() {
			return out, nil
		}
		q.AfterSeq = evs[len(evs)-1].Seq
	}
}

// RecordingMatch is wire.RecordingMatch: the API carries it.
type RecordingMatch = wire.RecordingMatch

// SearchRecordings finds sessions whose output or typed input contain text.
func (s *Server) SearchRecordings(ctx context.Context, c Caller, text string, limit int) ([]RecordingMatch, error) {
	if err := s.authorize(c, "SearchRecordings"); err != nil {
		return nil, err
	}
	if len(text) == 0 || len(text) > 256 {
		return nil, badRequest("search text must be 1 to 256 bytes")
	}
	infos, err := s.listRecordings(RecordingFilter{})
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	refs, bad, err := s.recordingRefs(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []RecordingMatch
	for _, in := range infos {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		matches, err := s.searchRecording(ctx, in.SessionID, refs, bad, text, limit-len(out))
		if err != nil {
			return nil, recordingErr(err)
		}
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

// searchRecording searches one recording, which must pass its check: an
// altered or missing recording fails the search, naming the session. A
// recording still being recorded may end in a partial line; what it holds
// so far is searched.
func (s *Server) searchRecording(ctx context.Context, id string, refs map[string]recordingRef, bad map[string]error,
	text string, limit int) ([]asciicast.Match, error) {
	rs, err := s.openChecked(ctx, s.cfg.Recordings, id, refs, bad)
	if errors.Is(err, recording.ErrNotFound) {
		return nil, nil // deleted meanwhile
	}
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var matches []asciicast.Match
	r, err := asciicast.NewReader(rs)
	if err == nil {
		matches, err = asciicast.Search(r, text, limit)
	}
	if cerr := rs.Finish(); cerr != nil {
		return nil, cerr
	}
	if err != nil && rs.Checked {
		// Intact, and not asciicast: what was recorded is not searchable.
		s.log.Warn("recording not searchable", "session", id, "err", err)
	}
	return matches, nil
}
