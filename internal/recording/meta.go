package recording

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Meta describes the session a recording belongs to.
type Meta struct {
	SessionID  string    `json:"session_id"`
	User       string    `json:"user,omitempty"`
	Login      string    `json:"login,omitempty"`
	Node       string    `json:"node,omitempty"`
	NodeID     string    `json:"node_id,omitempty"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Start      time.Time `json:"start"`
}

// MaxChunk is the largest chunk Upload sends and Store.Append accepts.
const MaxChunk = 1 << 20

// MaxSessionIDLen bounds session IDs, which become file names.
const MaxSessionIDLen = 64

// Errors returned by Store (and, through an Uploader, seen by the Spool).
var (
	// ErrNotOwner: the recording was created by another node.
	ErrNotOwner = errors.New("recording: belongs to another node")
	// ErrMismatch: bytes, length or SHA-256 differ from what is stored.
	ErrMismatch = errors.New("recording: content mismatch")
	// ErrNotFound: no such recording.
	ErrNotFound = errors.New("recording: not found")
	// ErrCompleted: the recording is complete and cannot grow.
	ErrCompleted = errors.New("recording: already complete")
	// ErrInvalidID: the session ID is not acceptable as a recording name.
	ErrInvalidID = errors.New("recording: invalid session id")
	// ErrChunkTooLarge: a chunk exceeds MaxChunk.
	ErrChunkTooLarge = errors.New("recording: chunk too large")
	// ErrClosed: the spool or recording is closed.
	ErrClosed = errors.New("recording: closed")
	// ErrMissing: the recording is known but its file is gone.
	ErrMissing = errors.New("recording: file missing")
	// ErrUnknownSession: auth has no record of the session the recording
	// is for, or another node started it. Auth refuses the upload.
	ErrUnknownSession = errors.New("recording: no such session")
)

// OffsetError reports that an upload's offset is not where the stored
// recording ends; Have is the stored length, where the uploader resumes.
type OffsetError struct{ Have int64 }

func (e *OffsetError) Error() string {
	return fmt.Sprintf("recording: offset mismatch: stored length is %d", e.Have)
}

// ValidSessionID reports whether id is acceptable as a recording name:
// 1 to MaxSessionIDLen ASCII letters, digits and '-', not starting with '-'
// (hex IDs and UUIDs qualify). Such a name cannot traverse paths.
func ValidSessionID(id string) bool {
	if len(id) == 0 || len(id) > MaxSessionIDLen || id[0] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
		default:
			return false
		}
	}
	return true
}

func checkID(id string) error {
	if !ValidSessionID(id) {
		return fmt.Errorf("%w: %.80q", ErrInvalidID, id)
	}
	return nil
}

// writeFileAtomic replaces path with data: a temporary file is written and
// fsynced, then renamed over path, so readers and a restarted process see
// the old or the new content, never a mix. With durable set the directory
// is fsynced too, so the rename itself survives a power loss.
func writeFileAtomic(path string, data []byte, durable bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

// writeStateAtomic is writeFileAtomic with a temporary file of its own
// (several auth processes may share the directory: a fixed name would be
// written by two at once).
func writeStateAtomic(path string, data []byte, durable bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
