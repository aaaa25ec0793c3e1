package recording

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Info describes a stored recording.
type Info struct {
	Meta
	// NodeID is the node that created (owns) the recording.
	NodeID string `json:"node_id"`
	Length int64  `json:"length"`
	SHA256 string `json:"sha256,omitempty"`
	// BlocksSHA256 is the root of the block hashes (see BlockSize) of a
	// completed recording; empty for one completed before they existed.
	BlocksSHA256 string    `json:"blocks_sha256,omitempty"`
	Complete     bool      `json:"complete"`
	Interrupted  bool      `json:"interrupted,omitempty"`
	Modified     time.Time `json:"-"`
}

// Store keeps recordings on disk on the auth side: <Dir>/<session>.cast with
// the bytes and <Dir>/<session>.json with the Info. The JSON length is the
// truth: bytes past it (a write interrupted by a crash) are ignored and
// overwritten. Safe for concurrent use; operations on one session are
// serialized.
type Store struct {
	dir   string
	locks [64]sync.Mutex // in this process; lockFile across processes

	// live holds the state of recordings being appended to. Their state
	// file is rewritten (after an fsync of the data) every persistBytes or
	// persistEvery rather than on every chunk; if auth stops in between,
	// the file's older length is the truth and the node, which keeps its
	// spool until Complete, sends the rest again.
	liveMu sync.Mutex
	live   map[string]*liveInfo
}

type liveInfo struct {
	info      Info
	persisted int64     // the length in the state file
	at        time.Time // when the state file was last written
	// sum is the SHA-256 of the info.Length bytes stored, kept as they are
	// appended so that Complete need not read them back. Nil when this auth
	// process did not see every byte (it restarted mid-recording) or the
	// recording began with AppendTrusted: Complete then reads the file back. Shared by the successive liveInfos of one
	// recording and used only under the recording's lock.
	sum hash.Hash
	// blocks hashes the same bytes by block (see BlockSize); set with sum.
	blocks *blockHasher
	// stamp is the state file as this process last read or wrote it.
	// Another auth process sharing the directory that writes the state
	// (its own appends, Complete) changes it: this entry is then stale
	// and the state file is read again.
	stamp fileStamp
}

// How often the state of a growing recording is made durable.
const (
	persistBytes = 8 << 20
	persistEvery = time.Second
)

// OpenStore opens (creating, mode 0700) a recording store in dir.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("recording: store directory is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("recording: create store directory: %w", err)
	}
	// Leftover temporary state and block files from a crash mid-update:
	// old ones only, since another auth process sharing the directory may
	// be writing its own right now.
	tmps, _ := filepath.Glob(filepath.Join(dir, "*.json.tmp*"))
	blockTmps, _ := filepath.Glob(filepath.Join(dir, "*.blocks.tmp*"))
	for _, t := range append(tmps, blockTmps...) {
		if st, err := os.Stat(t); err == nil && time.Since(st.ModTime()) > staleTemp {
			_ = os.Remove(t)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, lockDir), 0o700); err != nil {
		return nil, fmt.Errorf("recording: create lock directory: %w", err)
	}
	return &Store{dir: dir, live: map[string]*liveInfo{}}, nil
}

// Several auth processes may share one store directory (several auth
// instances on PostgreSQL, the directory on a network file system): each
// operation on a session holds, besides this process's mutex, an exclusive
// flock on one of 64 lock files (by the session id's hash) in lockDir, and
// an in-memory state is used only while the state file is as this process
// left it.
const (
	lockDir   = ".locks"
	staleTemp = 10 * time.Minute
)

// current returns the state of id: the in-memory state of a recording being
// appended to (and that entry) while the state file is as this process
// left it, else the state file's (and its stamp, for a new entry).
func (s *Store) current(id string) (*Info, *liveInfo, fileStamp, error) {
	if l := s.getLive(id); l != nil {
		if st, err := os.Stat(s.statePath(id)); err == nil && stampOf(st) == l.stamp {
			info := l.info
			return &info, l, l.stamp, nil
		}
		// Another process wrote the state (or deleted it): ours is stale.
		s.dropLive(id, l)
	}
	info, stamp, err := s.readInfo(id)
	return info, nil, stamp, err
}

// dropLive removes l from the in-memory states if it is still id's.
func (s *Store) dropLive(id string, l *liveInfo) {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	if s.live[id] == l {
		delete(s.live, id)
	}
}

// stateStamp is the state file's stamp as it is now.
func (s *Store) stateStamp(id string) (fileStamp, error) {
	st, err := os.Stat(s.statePath(id))
	if err != nil {
		return fileStamp{}, fmt.Errorf("recording: stat state of %s: %w", id, err)
	}
	return stampOf(st), nil
}

func (s *Store) setLive(id string, l *liveInfo) {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	if l == nil {
		delete(s.live, id)
		return
	}
	s.live[id] = l
}

func (s *Store) getLive(id string) *liveInfo {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	return s.live[id]
}

// lock serialises the operations on id, in this process and across the
// processes sharing the directory.
func (s *Store) lock(id string) (unlock func(), err error) {
	h := fnv.New32a()
	h.Write([]byte(id))
	stripe := h.Sum32() % uint32(len(s.locks))
	m := &s.locks[stripe]
	m.Lock()
	f, err := os.OpenFile(filepath.Join(s.dir, lockDir, fmt.Sprintf("%02d", stripe)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		m.Unlock()
		return nil, fmt.Errorf("recording: lock %s: %w", id, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		m.Unlock()
		return nil, fmt.Errorf("recording: lock %s: %w", id, err)
	}
	return func() {
		f.Close() // releases the flock
		m.Unlock()
	}, nil
}

func (s *Store) castPath(id string) string   { return filepath.Join(s.dir, id+".cast") }
func (s *Store) statePath(id string) string  { return filepath.Join(s.dir, id+".json") }
func (s *Store) blocksPath(id string) string { return filepath.Join(s.dir, id+".blocks") }

// readInfo loads the state of id and the stamp of the file it read;
// ErrNotFound when there is none.
func (s *Store) readInfo(id string) (*Info, fileStamp, error) {
	f, err := os.Open(s.statePath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fileStamp{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("recording: read state of %s: %w", id, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("recording: read state of %s: %w", id, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("recording: read state of %s: %w", id, err)
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fileStamp{}, fmt.Errorf("recording: decode state of %s: %w", id, err)
	}
	if info.SessionID != id || info.Length < 0 {
		return nil, fileStamp{}, fmt.Errorf("recording: corrupt state of %s", id)
	}
	info.Meta.NodeID = info.NodeID // one JSON field for both
	info.Modified = st.ModTime()
	return &info, stampOf(st), nil
}

// writeInfo replaces the state file. Non-durable updates (a new length
// after Append; the data itself is fsynced) may be lost to a power failure,
// leaving an older, shorter length: the node then gets an OffsetError and
// sends the rest again from its spool, which it keeps until Complete, and
// Complete's update is durable.
func (s *Store) writeInfo(info *Info, durable bool) error {
	data, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("recording: encode state: %w", err)
	}
	if err := writeStateAtomic(s.statePath(info.SessionID), data, durable); err != nil {
		return fmt.Errorf("recording: write state of %s: %w", info.SessionID, err)
	}
	return nil
}

// Append writes data at offset to the recording of meta.SessionID, creating
// it (owned by nodeID) at offset 0. The offset must equal the stored length
// (*OffsetError{Have} otherwise), except for a retried chunk lying wholly
// within the stored bytes, which succeeds without writing when the bytes are
// identical (ErrMismatch when they are not). Another node gets ErrNotOwner.
// The first bytes are fsynced before Append returns; later ones are made
// durable (with the state) at least every persistBytes or persistEvery. A
// crash of auth may lose the rest, which the node, keeping its spool until
// Complete, sends again when told the durable length (*OffsetError).
// A recording appended from its start is hashed as it arrives, so that
// Complete need not read it back.
func (s *Store) Append(meta Meta, nodeID string, offset int64, data []byte) (int64, error) {
	return s.append(meta, nodeID, offset, data, false)
}

// AppendTrusted is Append for a node in auth's own process (all-in-one),
// whose appends run while the session is being recorded: a recording that
// begins this way is not hashed as it arrives, which would cost the session
// (about 2.5% of its bulk throughput, measured), but read back once by
// Complete, after the session, which checks the node's hash and computes
// the block hashes then.
func (s *Store) AppendTrusted(meta Meta, nodeID string, offset int64, data []byte) (int64, error) {
	return s.append(meta, nodeID, offset, data, true)
}

func (s *Store) append(meta Meta, nodeID string, offset int64, data []byte, trusted bool) (int64, error) {
	id := meta.SessionID
	if err := checkID(id); err != nil {
		return 0, err
	}
	if len(data) > MaxChunk {
		return 0, fmt.Errorf("%w: %d bytes (max %d)", ErrChunkTooLarge, len(data), MaxChunk)
	}
	if offset < 0 {
		return 0, fmt.Errorf("recording: negative offset %d", offset)
	}
	if nodeID == "" {
		return 0, errors.New("recording: node id is required")
	}
	unlock, err := s.lock(id)
	if err != nil {
		return 0, err
	}
	defer unlock()

	info, l, stamp, err := s.current(id)
	switch {
	case errors.Is(err, ErrNotFound):
		if offset != 0 {
			return 0, &OffsetError{Have: 0}
		}
		meta.NodeID = nodeID
		info = &Info{Meta: meta, NodeID: nodeID}
		// A stale data file (a creation that crashed before its state was
		// written) is replaced: the state file is the truth.
		if err := s.writeInfo(info, true); err != nil {
			return 0, err
		}
		if stamp, err = s.stateStamp(id); err != nil {
			return 0, err
		}
	case err != nil:
		return 0, err
	case info.NodeID != nodeID:
		return 0, fmt.Errorf("%w: %s", ErrNotOwner, id)
	}
	if l == nil {
		l = &liveInfo{info: *info, persisted: info.Length, at: time.Now(), stamp: stamp}
		if info.Length == 0 {
			if !trusted {
				l.sum, l.blocks = sha256.New(), newBlockHasher()
			}
		}
	}

	end := offset + int64(len(data))
	if offset != info.Length {
		if offset < info.Length && end <= info.Length {
			return info.Length, s.sameBytes(id, offset, data)
		}
		return 0, &OffsetError{Have: info.Length}
	}
	if info.Complete {
		if len(data) == 0 {
			return info.Length, nil
		}
		return 0, fmt.Errorf("%w: %s", ErrCompleted, id)
	}
	if len(data) == 0 {
		return info.Length, nil
	}
	f, err := os.OpenFile(s.castPath(id), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("recording: open %s: %w", id, err)
	}
	_, werr := f.WriteAt(data, offset)
	info.Length = end
	if l.sum != nil && werr == nil {
		l.sum.Write(data) // offset == the stored length: checked above
		l.blocks.Write(data)
	}
	// The state file may claim only bytes already durable: fsync first.
	// The first bytes are made durable at once (a recording exists on auth
	// as soon as it starts); later ones every persistBytes or persistEvery.
	persist := werr == nil && (l.persisted == 0 || end-l.persisted >= persistBytes || time.Since(l.at) >= persistEvery)
	if persist {
		if werr = f.Sync(); werr == nil {
			dropCache(f, end)
		}
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		s.setLive(id, nil) // the state file is the truth again
		return 0, fmt.Errorf("recording: write %s: %w", id, werr)
	}
	// A published liveInfo is never modified (Stat reads it without the
	// session's lock): replace it.
	next := &liveInfo{info: *info, persisted: l.persisted, at: l.at, sum: l.sum, blocks: l.blocks, stamp: l.stamp}
	if persist {
		if err := s.writeInfo(info, false); err != nil {
			s.setLive(id, nil)
			return 0, err
		}
		if next.stamp, err = s.stateStamp(id); err != nil {
			s.setLive(id, nil)
			return 0, err
		}
		next.persisted, next.at = end, time.Now()
	}
	s.setLive(id, next)
	return end, nil
}

// sameBytes compares data with the stored bytes at offset.
func (s *Store) sameBytes(id string, offset int64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	f, err := os.Open(s.castPath(id))
	if err != nil {
		return fmt.Errorf("recording: open %s: %w", id, err)
	}
	defer f.Close()
	have := make([]byte, len(data))
	if _, err := f.ReadAt(have, offset); err != nil {
		return fmt.Errorf("recording: read %s: %w", id, err)
	}
	if !bytes.Equal(have, data) {
		return fmt.Errorf("%w: retried chunk at %d differs from stored bytes", ErrMismatch, offset)
	}
	return nil
}

// Complete marks the recording finished after checking that the stored
// bytes have exactly length bytes and SHA-256 sha256hex (ErrMismatch
// otherwise; see AppendTrusted for the one case where the hash is taken as
// given). Completing again with the same values succeeds.
func (s *Store) Complete(sessionID, nodeID string, length int64, sha256hex string, interrupted bool) error {
	if err := checkID(sessionID); err != nil {
		return err
	}
	unlock, err := s.lock(sessionID)
	if err != nil {
		return err
	}
	defer unlock()
	info, l, _, err := s.current(sessionID)
	if err != nil {
		return err
	}
	if info.NodeID != nodeID {
		return fmt.Errorf("%w: %s", ErrNotOwner, sessionID)
	}
	sha256hex = strings.ToLower(sha256hex)
	if b, err := hex.DecodeString(sha256hex); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("%w: %s: %.80q is not a SHA-256", ErrMismatch, sessionID, sha256hex)
	}
	if info.Complete {
		if info.Length == length && info.SHA256 == sha256hex {
			return nil
		}
		return fmt.Errorf("%w: %s is already complete with other length or hash", ErrMismatch, sessionID)
	}
	f, err := os.OpenFile(s.castPath(sessionID), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("recording: open %s: %w", sessionID, err)
	}
	defer f.Close()
	if length > info.Length {
		// Another auth process sharing the directory may have stored
		// bytes this one has not seen (its appends since its last state
		// update are known only to it): if the file holds them, the hash
		// of the file's first length bytes decides, as for any recording.
		if st, err := f.Stat(); err == nil && st.Size() >= length {
			info.Length, l = length, nil
		}
	}
	if length != info.Length {
		return fmt.Errorf("%w: %s: length %d, stored %d", ErrMismatch, sessionID, length, info.Length)
	}
	list, err := checkSum(f, l, info.Length, sessionID, sha256hex)
	if err != nil {
		return err
	}
	// Drop bytes past the length left by an interrupted write.
	if st, err := f.Stat(); err == nil && st.Size() != info.Length {
		if err := f.Truncate(info.Length); err != nil {
			return fmt.Errorf("recording: truncate %s: %w", sessionID, err)
		}
	}
	// Appends since the last state update are not durable yet.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("recording: sync %s: %w", sessionID, err)
	}
	dropCache(f, info.Length)
	// The block hashes are durable before the state that names their root.
	if err := writeStateAtomic(s.blocksPath(sessionID), list, true); err != nil {
		return fmt.Errorf("recording: write block hashes of %s: %w", sessionID, err)
	}
	info.Complete, info.Interrupted, info.SHA256, info.BlocksSHA256 = true, interrupted, sha256hex, BlocksRoot(list)
	if err := s.writeInfo(info, true); err != nil {
		return err
	}
	s.setLive(sessionID, nil)
	return nil
}

// checkSum compares want with the SHA-256 of the recording's first length
// bytes, and returns their block hashes: the running hashes when this
// process kept them, else read back from f (a recording appended by
// AppendTrusted, or resumed after a restart).
func checkSum(f *os.File, l *liveInfo, length int64, id, want string) ([]byte, error) {
	var h hash.Hash
	var blocks *blockHasher
	if l != nil && l.sum != nil {
		h, blocks = l.sum, l.blocks
	} else {
		h, blocks = sha256.New(), newBlockHasher()
		if _, err := io.Copy(io.MultiWriter(h, blocks), io.NewSectionReader(f, 0, length)); err != nil {
			return nil, fmt.Errorf("recording: hash %s: %w", id, err)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return nil, fmt.Errorf("%w: %s: sha256 %s, stored bytes have %s", ErrMismatch, id, want, got)
	}
	return blocks.list(), nil
}

// BlockList returns the block hashes of completed recording id (see
// BlockSize), or ErrNotFound when it has none (completed before they
// existed). The caller checks them against the audit log's root.
func (s *Store) BlockList(id string, length int64) ([]byte, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blocksPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: block hashes of %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("recording: open block hashes of %s: %w", id, err)
	}
	defer f.Close()
	// Never more than the length calls for (and one byte to tell).
	want := blockCount(length) * sha256.Size
	list, err := io.ReadAll(io.LimitReader(f, want+1))
	if err != nil {
		return nil, fmt.Errorf("recording: read block hashes of %s: %w", id, err)
	}
	return list, nil
}

// Open returns the recording's bytes (its stored length; a recording still
// being uploaded can be read too) and its Info.
func (s *Store) Open(sessionID string) (io.ReadCloser, *Info, error) {
	if err := checkID(sessionID); err != nil {
		return nil, nil, err
	}
	info, err := s.Stat(sessionID)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(s.castPath(sessionID))
	if errors.Is(err, fs.ErrNotExist) && info.Length == 0 {
		return io.NopCloser(bytes.NewReader(nil)), info, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, info, fmt.Errorf("%w: the recording of session %s has no file (%d bytes are recorded)", ErrMissing, sessionID, info.Length)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("recording: open %s: %w", sessionID, err)
	}
	return &sectionReadCloser{SectionReader: io.NewSectionReader(f, 0, info.Length), f: f}, info, nil
}

type sectionReadCloser struct {
	*io.SectionReader
	f *os.File
}

func (r *sectionReadCloser) Close() error { return r.f.Close() }

// Stat returns the recording's Info.
func (s *Store) Stat(sessionID string) (*Info, error) {
	if err := checkID(sessionID); err != nil {
		return nil, err
	}
	info, _, _, err := s.current(sessionID)
	return info, err
}

// List returns all recordings, oldest session start first.
func (s *Store) List() ([]Info, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("recording: list %s: %w", s.dir, err)
	}
	var out []Info
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || !ValidSessionID(id) {
			continue
		}
		info, _, _, err := s.current(id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *info)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		return out[i].SessionID < out[j].SessionID
	})
	return out, nil
}

// Delete removes a recording.
func (s *Store) Delete(sessionID string) error {
	if err := checkID(sessionID); err != nil {
		return err
	}
	unlock, err := s.lock(sessionID)
	if err != nil {
		return err
	}
	defer unlock()
	if _, _, _, err := s.current(sessionID); err != nil {
		return err
	}
	s.setLive(sessionID, nil)
	// State first: data without state is invisible and replaced if the
	// session ID is ever used again.
	if err := os.Remove(s.statePath(sessionID)); err != nil {
		return fmt.Errorf("recording: delete %s: %w", sessionID, err)
	}
	for _, p := range []string{s.castPath(sessionID), s.blocksPath(sessionID)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("recording: delete %s: %w", sessionID, err)
		}
	}
	return syncDir(s.dir)
}
