package auth

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/warden-sh/warden/internal/recording"
)

// RecordingFile is a recording opened for random access: the web player
// reads it by ranges and never the whole file to start or to seek.
type RecordingFile struct {
	Info recording.Info
	io.ReaderAt
	io.Closer
	// Size is the length to serve: the recorded length.
	Size int64
}

// OpenRecordingAt opens a recording for ranged reads, with the same
// authorization as OpenRecording. A range cannot be checked against the
// SHA-256 the audit log recorded without reading the whole recording, so
// this checks what it can without that: a completed recording must have its
// recording.complete in the audit log with the same length. The full read
// (OpenRecording: download, search, warden recordings verify) checks the
// bytes.
func (s *Server) OpenRecordingAt(ctx context.Context, c Caller, id string) (*RecordingFile, error) {
	if err := s.authorize(c, "OpenRecordingAt"); err != nil {
		return nil, err
	}
	st, refs, bad, err := s.recordingToRead(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := bad[id]; err != nil {
		s.recordingAltered(ctx, id, err)
		return nil, recordingErr(err)
	}
	rc, info, err := st.Open(id)
	if err != nil {
		if errors.Is(err, recording.ErrMissing) {
			s.recordingAltered(ctx, id, err)
		}
		return nil, recordingErr(err)
	}
	ref, ok := refs[id]
	if !ok && info.Complete {
		if ref, ok, err = s.refAfterCompletion(ctx, id); err != nil {
			rc.Close()
			return nil, err
		}
	}
	var altered error
	switch {
	case ok && ref.length != info.Length:
		altered = &recording.AlteredError{SessionID: id, Reason: fmt.Sprintf("it is %d bytes long, the audit log recorded %d", info.Length, ref.length)}
	case !ok && info.Complete:
		altered = &recording.AlteredError{SessionID: id, Reason: "it is marked complete, but the audit log records no recording.complete for it"}
	}
	if altered != nil {
		rc.Close()
		s.recordingAltered(ctx, id, altered)
		return nil, recordingErr(altered)
	}
	ra, isRA := rc.(io.ReaderAt)
	if !isRA {
		rc.Close()
		return nil, fmt.Errorf("recording %s: no random access", id)
	}
	return &RecordingFile{Info: *info, ReaderAt: ra, Closer: rc, Size: info.Length}, nil
}
