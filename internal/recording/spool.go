package recording

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/asciicast"
)

// Uploader sends spooled recordings to auth. Implementations must not keep
// data after returning. Errors that wrap ErrNotOwner, ErrMismatch,
// ErrCompleted, ErrInvalidID or ErrChunkTooLarge are final: the spool stops
// uploading that recording and keeps its files. Any other error is retried
// with backoff.
type Uploader interface {
	// Upload appends data at offset to the session's recording on auth. It
	// is idempotent: if auth already has bytes up to offset+len(data) it
	// succeeds; if auth's length differs from offset it returns
	// *OffsetError{Have: authLength} so the spool resumes from there.
	Upload(ctx context.Context, meta Meta, offset int64, data []byte) error
	// Complete closes the recording on auth with its total length and
	// SHA-256; interrupted=true when the node died before the session
	// ended. Returning an error wrapping ErrNotFound makes the spool upload
	// the recording again from the start.
	Complete(ctx context.Context, meta Meta, length int64, sha256hex string, interrupted bool) error
}

// SpoolConfig configures a Spool.
type SpoolConfig struct {
	// Dir holds the spooled recordings (created with mode 0700).
	Dir      string
	Uploader Uploader
	Logger   *slog.Logger
	// ChunkSize is the largest upload (default 1 MiB, at most MaxChunk).
	ChunkSize int
	// FlushInterval is how often buffered data is fsynced and offered for
	// upload (default 250ms).
	FlushInterval time.Duration
	Now           func() time.Time
	// MaxConcurrentUploads bounds Upload and Complete calls in flight
	// across all recordings (default 4).
	MaxConcurrentUploads int
	// MaxBackoff caps the wait between retries while auth is unreachable
	// (default 10s); the first retry waits 100ms or MaxBackoff if smaller.
	MaxBackoff time.Duration
	// UploadTimeout bounds one Upload or Complete call (default 30s).
	UploadTimeout time.Duration
}

// Defaults.
const (
	DefaultChunkSize     = 1 << 20
	DefaultFlushInterval = 250 * time.Millisecond
	defaultConcurrency   = 4
	defaultMaxBackoff    = 10 * time.Second
	defaultUploadTimeout = 30 * time.Second
	minBackoff           = 100 * time.Millisecond
)

// Spool is the node side of recording: local files, uploaded in the
// background. See the package documentation.
type Spool struct {
	cfg SpoolConfig
	log *slog.Logger
	// ctx is the lifetime of the background flushers and uploaders, not a
	// request context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan []byte // upload permits, each carrying a chunk buffer
	wg     sync.WaitGroup
	// prio runs recordings' encoding and writing at low CPU priority; nil
	// where that is not possible.
	prio *lowPriority

	mu      sync.Mutex
	closed  bool
	uploads map[string]*upload
	recs    map[*SpoolRecording]struct{}
}

// spoolState is the node-side state file <Dir>/<session>.json.
type spoolState struct {
	Meta        Meta `json:"meta"`
	RecordInput bool `json:"record_input,omitempty"`
	// Uploaded is the length auth acknowledged.
	Uploaded int64 `json:"uploaded"`
	// Closed is set once the session ended (or a crashed recording was
	// recovered): Length and SHA256 are final.
	Closed      bool   `json:"closed"`
	Length      int64  `json:"length,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	Interrupted bool   `json:"interrupted,omitempty"`
}

// OpenSpool opens the spool directory and resumes every unfinished
// recording found there: cleanly closed ones are uploaded and completed; one
// whose session never closed (the node was killed) is cut back to its last
// complete line and completed with interrupted=true. Background work runs
// until Close or until ctx is cancelled.
func OpenSpool(ctx context.Context, cfg SpoolConfig) (*Spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("recording: spool directory is required")
	}
	if cfg.Uploader == nil {
		return nil, errors.New("recording: spool uploader is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	cfg.ChunkSize = min(cfg.ChunkSize, MaxChunk)
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxConcurrentUploads <= 0 {
		cfg.MaxConcurrentUploads = defaultConcurrency
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	if cfg.UploadTimeout <= 0 {
		cfg.UploadTimeout = defaultUploadTimeout
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("recording: create spool directory: %w", err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("recording: restrict spool directory: %w", err)
	}
	s := &Spool{
		cfg:     cfg,
		log:     cfg.Logger.With(slog.String("component", "recording-spool")),
		slots:   make(chan []byte, cfg.MaxConcurrentUploads),
		uploads: make(map[string]*upload),
		recs:    make(map[*SpoolRecording]struct{}),
	}
	for range cfg.MaxConcurrentUploads {
		s.slots <- nil // buffers are allocated on first use
	}
	found, err := s.recoverAll()
	if err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.prio = sharedLowPriority(s.log)
	s.mu.Lock()
	for _, u := range found {
		s.uploads[u.id] = u
		s.wg.Add(1)
		go s.runUpload(s.ctx, u)
	}
	s.mu.Unlock()
	if len(found) > 0 {
		s.log.Info("resuming spooled recordings", slog.Int("count", len(found)))
	}
	return s, nil
}

func (s *Spool) castPath(id string) string  { return filepath.Join(s.cfg.Dir, id+".cast") }
func (s *Spool) statePath(id string) string { return filepath.Join(s.cfg.Dir, id+".json") }
func (s *Spool) ackPath(id string) string   { return filepath.Join(s.cfg.Dir, id+".ack") }

func (s *Spool) newUpload(id string, st spoolState) *upload {
	return &upload{id: id, castPath: s.castPath(id), statePath: s.statePath(id), ackPath: s.ackPath(id),
		wake: make(chan struct{}, 1), st: st}
}

// recoverAll loads every state file in the spool directory.
func (s *Spool) recoverAll() ([]*upload, error) {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("recording: read spool directory: %w", err)
	}
	var out []*upload
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".json.tmp") {
			_ = os.Remove(filepath.Join(s.cfg.Dir, name))
			continue
		}
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || !e.Type().IsRegular() || !ValidSessionID(id) {
			continue
		}
		u, err := s.recoverOne(id)
		if err != nil {
			// Leave the files for an operator; other recordings go on.
			s.log.Error("cannot resume spooled recording", slog.String("session_id", id), slog.Any("err", err))
			continue
		}
		if u != nil {
			out = append(out, u)
		}
	}
	return out, nil
}

// recoverOne prepares one spooled recording for upload; nil, nil when there
// is nothing to do.
func (s *Spool) recoverOne(id string) (*upload, error) {
	data, err := os.ReadFile(s.statePath(id))
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var st spoolState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	if st.Meta.SessionID != id || st.Uploaded < 0 || st.Length < 0 {
		return nil, errors.New("corrupt state")
	}
	fi, err := os.Stat(s.castPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		// Start died before creating the data file, or the recording was
		// completed and its data file already deleted.
		_ = os.Remove(s.ackPath(id))
		if err := os.Remove(s.statePath(id)); err != nil {
			return nil, fmt.Errorf("remove stale state: %w", err)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stat data: %w", err)
	}
	if b, err := os.ReadFile(s.ackPath(id)); err == nil {
		// An offset past the data (corruption) is clamped: auth's
		// OffsetError says where to go on.
		st.Uploaded = min(max(st.Uploaded, decodeAck(b)), fi.Size())
	}
	u := s.newUpload(id, st)
	if st.Closed {
		if fi.Size() != st.Length {
			return nil, fmt.Errorf("data file has %d bytes, state says %d", fi.Size(), st.Length)
		}
		u.durable = st.Length
		return u, nil
	}
	// The node died during the session: keep every complete event line.
	length, sum, err := salvage(u.castPath, st.Uploaded)
	if err != nil {
		return nil, err
	}
	u.st.Closed, u.st.Length, u.st.SHA256, u.st.Interrupted = true, length, sum, true
	u.durable = length
	if err := u.save(); err != nil {
		return nil, err
	}
	s.log.Warn("recovered interrupted recording", slog.String("session_id", id), slog.Int64("length", length))
	return u, nil
}

// salvage truncates an interrupted recording after its last newline (never
// below uploaded, which auth already holds), fsyncs it and returns its
// length and SHA-256.
func salvage(path string, uploaded int64) (int64, string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, "", fmt.Errorf("open data: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, "", fmt.Errorf("stat data: %w", err)
	}
	size := fi.Size()
	if size < uploaded {
		return 0, "", fmt.Errorf("data file has %d bytes but %d were already uploaded", size, uploaded)
	}
	cut, err := lastLineEnd(f, size)
	if err != nil {
		return 0, "", err
	}
	cut = max(cut, uploaded)
	if cut != size {
		if err := f.Truncate(cut); err != nil {
			return 0, "", fmt.Errorf("truncate data: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return 0, "", fmt.Errorf("sync data: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, cut)); err != nil {
		return 0, "", fmt.Errorf("hash data: %w", err)
	}
	return cut, hex.EncodeToString(h.Sum(nil)), nil
}

// lastLineEnd returns the offset just past the last '\n' in f's first size
// bytes (0 when there is none), reading backwards.
func lastLineEnd(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(end-int64(len(buf)), 0)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil {
			return 0, fmt.Errorf("read data: %w", err)
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] == '\n' {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}

// Start begins a recording: <Dir>/<session>.cast (0600) with the asciicast
// header written and fsynced at once, and its state file. Input is recorded
// only when recordInput is set. The recording is uploaded while it grows.
func (s *Spool) Start(meta Meta, h asciicast.Header, recordInput bool) (*SpoolRecording, error) {
	id := meta.SessionID
	if err := checkID(id); err != nil {
		return nil, err
	}
	if meta.Start.IsZero() {
		meta.Start = s.cfg.Now()
	}
	if _, err := os.Stat(s.castPath(id)); err == nil {
		return nil, fmt.Errorf("recording: %s already exists in the spool", id)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if _, dup := s.uploads[id]; dup {
		s.mu.Unlock()
		return nil, fmt.Errorf("recording: %s is already being recorded", id)
	}
	u := s.newUpload(id, spoolState{Meta: meta, RecordInput: recordInput})
	s.uploads[id] = u // reserve the id
	s.mu.Unlock()

	r, err := s.create(u, h)
	if err != nil {
		s.mu.Lock()
		delete(s.uploads, id)
		s.mu.Unlock()
		_ = os.Remove(u.castPath)
		_ = os.Remove(u.statePath)
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		r.f.Close()
		return nil, ErrClosed // the files stay and are resumed next time
	}
	s.recs[r] = struct{}{}
	s.wg.Add(2)
	go r.flushLoop(s.ctx)
	go s.runUpload(s.ctx, u)
	s.mu.Unlock()
	return r, nil
}

// create writes the state file, then the data file with the header.
func (s *Spool) create(u *upload, h asciicast.Header) (*SpoolRecording, error) {
	if err := u.save(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(u.castPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recording: create %s: %w", u.id, err)
	}
	r := newSpoolRecording(s, u, f)
	cw, err := asciicast.NewWriter(outSink{r}, h, u.st.Meta.Start)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("recording: start %s: %w", u.id, err)
	}
	r.cw = cw
	if err := r.flush(true, false, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("recording: write header of %s: %w", u.id, err)
	}
	return r, nil
}

// Close stops the uploaders and flushers; open recordings are flushed and
// fsynced and then refuse writes. Whatever is not yet uploaded stays on disk
// for the next OpenSpool. Close sessions' recordings first to have them
// completed normally.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for r := range s.recs {
		r.f.Close()
	}
	return nil
}

// Pending is the number of recordings not yet fully uploaded and completed,
// including those still being recorded.
func (s *Spool) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.uploads)
}

func (s *Spool) forget(u *upload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uploads[u.id] == u {
		delete(s.uploads, u.id)
	}
}

func (s *Spool) forgetRecording(r *SpoolRecording) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, r)
}
