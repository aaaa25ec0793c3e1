package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Record modes, Permissions.RecordMode.
const (
	RecordOff        = "off"
	RecordBestEffort = "best_effort"
	RecordStrict     = "strict"
)

// Messages shown to the user when strict recording cannot be kept up.
const (
	msgRecordingUnavailable = "session recording is required by your roles but is unavailable"
	msgRecordingFailed      = "session recording failed; the session is ended because your roles require recording"
)

// recordStartTimeout bounds Recorder.Start.
const recordStartTimeout = 10 * time.Second

// Recorder starts session recordings.
type Recorder interface {
	// Start is called for every interactive (PTY) session before the shell
	// starts.
	Start(ctx context.Context, meta RecordingMeta) (SessionRecorder, error)
}

// RecordingMeta describes the session being recorded.
type RecordingMeta struct {
	SessionID, User, Login, NodeName, NodeID, RemoteAddr string
	Cols, Rows                                           int
	Term, Shell                                          string
	Start                                                time.Time
	RecordInput                                          bool
}

// SessionRecorder records one session. Its methods may be called from
// different goroutines and must not block on the network.
type SessionRecorder interface {
	Output(p []byte) error
	Input(p []byte) error
	Resize(cols, rows int) error
	// Close finalizes the recording and returns its total length in bytes
	// and hex SHA-256.
	Close() (length int64, sha256hex string, err error)
}

// recordMode normalizes a role's record mode: "" is best effort and an
// unknown value is treated as strict (fail closed).
func recordMode(m string) string {
	switch m {
	case "", RecordBestEffort:
		return RecordBestEffort
	case RecordOff:
		return RecordOff
	default:
		return RecordStrict
	}
}

// recordDim brings a terminal dimension into the range recordings accept,
// like setWinsize treats zero.
func recordDim(v uint32, def int) int {
	if v == 0 {
		return def
	}
	return int(min(v, 10000))
}

// sessionRecording applies a session's recording policy around its
// SessionRecorder: in strict mode the first failure ends the session, in
// best-effort mode it stops recording and the session goes on.
type sessionRecording struct {
	rec    SessionRecorder
	mode   string
	input  bool
	log    *slog.Logger
	onFail func() // strict: tell the user and end the session

	mu     sync.Mutex
	err    error // first failure
	closed bool
}

var errRecordingFailed = errors.New("session recording failed")

func (r *sessionRecording) do(what string, f func(SessionRecorder) error) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	if r.err != nil {
		r.mu.Unlock()
		if r.mode == RecordStrict {
			return errRecordingFailed
		}
		return nil
	}
	err := f(r.rec)
	if err != nil {
		r.err = err
	}
	r.mu.Unlock()
	if err == nil {
		return nil
	}
	if r.mode != RecordStrict {
		r.log.Warn("session recording failed; continuing without it (best effort)", slog.String("op", what), slog.Any("err", err))
		return nil
	}
	r.log.Error("session recording failed; ending the session (strict)", slog.String("op", what), slog.Any("err", err))
	r.onFail()
	return errRecordingFailed
}

func (r *sessionRecording) output(p []byte) error {
	return r.do("output", func(sr SessionRecorder) error { return sr.Output(p) })
}

func (r *sessionRecording) resize(cols, rows int) error {
	return r.do("resize", func(sr SessionRecorder) error { return sr.Resize(cols, rows) })
}

// close finalizes the recording and adds its outcome to audit fields.
func (r *sessionRecording) close(fields map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	length, sum, err := r.rec.Close()
	fields["recording"] = true
	if err != nil {
		r.log.Error("finalize session recording", slog.Any("err", err))
	}
	if sum != "" {
		fields["recording_length"] = length
		fields["recording_sha256"] = sum
	}
	if err := errors.Join(r.err, err); err != nil {
		fields["recording_error"] = firstLine(err.Error())
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// recordingWriter records PTY output before passing it to the client, so
// that nothing reaches the user unrecorded in strict mode.
type recordingWriter struct {
	w   io.Writer
	rec *sessionRecording
}

func (t recordingWriter) Write(p []byte) (int, error) {
	if err := t.rec.output(p); err != nil {
		return 0, err
	}
	return t.w.Write(p)
}

// recordingReader records what the user types on its way to the PTY.
type recordingReader struct {
	r   io.Reader
	rec *sessionRecording
}

func (t recordingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		if rerr := t.rec.do("input", func(sr SessionRecorder) error { return sr.Input(p[:n]) }); rerr != nil {
			return 0, rerr
		}
	}
	return n, err
}

// startRecording starts recording a PTY session as its roles ask. It returns
// the recording (nil when not recording), audit fields describing the
// outcome, and refuse=true when the session must not start. Callers hold
// s.mu.
func (s *session) startRecording(ctx context.Context, kind string, env []string) (rec *sessionRecording, fields map[string]any, refuse bool) {
	perms := &s.c.auth.perms
	mode := recordMode(perms.RecordMode)
	fields = map[string]any{"record_mode": mode, "recording": false}
	// PTY sessions and interactive shells without a PTY (ssh -T) are
	// recorded; a plain exec is audited by its command line instead.
	if (s.pty == nil && kind != kindShell) || mode == RecordOff {
		return nil, fields, false
	}
	recorder := s.c.srv.cfg.Recorder
	if recorder == nil {
		if mode == RecordStrict {
			s.log().Warn("strict session recording required but this node has no recorder")
			fields["recording_error"] = "no recorder configured"
			return nil, fields, true
		}
		return nil, fields, false
	}
	term, cols, rows := "dumb", 80, 24
	if s.pty != nil {
		term, cols, rows = s.pty.Term, recordDim(s.pty.Columns, 80), recordDim(s.pty.Rows, 24)
	}
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "TERM="); ok {
			term = v
		}
	}
	meta := RecordingMeta{
		SessionID: s.id, User: perms.User, Login: s.c.auth.login,
		NodeName: s.c.srv.cfg.NodeName, NodeID: s.c.srv.cfg.NodeID,
		RemoteAddr: s.c.remote,
		Cols:       cols, Rows: rows,
		Term: term, Shell: s.c.auth.user.Shell, Start: s.c.srv.cfg.Now(),
		RecordInput: perms.RecordInput,
	}
	sctx, cancel := context.WithTimeout(ctx, recordStartTimeout)
	defer cancel()
	sr, err := recorder.Start(sctx, meta)
	if err == nil && sr == nil {
		err = errors.New("recorder returned no recording")
	}
	if err != nil {
		fields["recording_error"] = firstLine(err.Error())
		if mode == RecordStrict {
			s.log().Error("start session recording (strict): refusing the session", slog.String("kind", kind), slog.Any("err", err))
			return nil, fields, true
		}
		s.log().Warn("start session recording (best effort): continuing without it", slog.String("kind", kind), slog.Any("err", err))
		return nil, fields, false
	}
	fields["recording"] = true
	return &sessionRecording{rec: sr, mode: mode, input: perms.RecordInput, log: s.log()}, fields, false
}
