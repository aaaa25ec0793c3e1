package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

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
// SHA-256 of the whole recording without reading all of it, so a completed
// recording is checked by blocks: its recording.complete in the audit log
// records the root of its block hashes (recording.BlockSize), the block
// list stored with it must have that root, and every block a read touches
// must have its hash in the list (*recording.AlteredError otherwise, and
// recording.altered audited). A recording completed before block hashes
// were kept is checked only by its length here; the full read
// (OpenRecording: download, search, warden recordings verify) checks its
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
	if ok && ref.blocks != "" {
		checked, err := s.blockChecked(ctx, st, ra, id, info.Length, ref.blocks)
		if err != nil {
			rc.Close()
			return nil, err
		}
		ra = checked
	}
	return &RecordingFile{Info: *info, ReaderAt: ra, Closer: rc, Size: info.Length}, nil
}

// blockChecked wraps ra, completed recording id, so that every read checks
// the blocks it touches against the block list whose root is root.
func (s *Server) blockChecked(ctx context.Context, st *recording.Store, ra io.ReaderAt, id string, length int64, root string) (io.ReaderAt, error) {
	list, err := st.BlockList(id, length)
	if errors.Is(err, recording.ErrNotFound) {
		err = &recording.AlteredError{SessionID: id, Reason: "its block hashes are missing"}
	}
	if err == nil {
		var checked *recording.BlockCheckedReaderAt
		if checked, err = recording.NewBlockCheckedReaderAt(ra, id, length, list, root); err == nil {
			return &alteredReporter{ra: checked, report: func(err error) { s.recordingAltered(context.WithoutCancel(ctx), id, err) }}, nil
		}
	}
	var altered *recording.AlteredError
	if errors.As(err, &altered) {
		s.recordingAltered(ctx, id, err)
		return nil, recordingErr(err)
	}
	return nil, err
}

// alteredReporter audits the first *recording.AlteredError its reads meet.
type alteredReporter struct {
	ra     io.ReaderAt
	once   sync.Once
	report func(error)
}

func (a *alteredReporter) ReadAt(p []byte, off int64) (int, error) {
	n, err := a.ra.ReadAt(p, off)
	var altered *recording.AlteredError
	if errors.As(err, &altered) {
		a.once.Do(func() { a.report(err) })
		err = recordingErr(err)
	}
	return n, err
}
