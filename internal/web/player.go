package web

import (
	"bufio"
	"bytes"
	"container/list"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/asciicast"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/recording"
)

// The recording player (player.js, on xterm) streams a recording: it asks
// for the index (time → byte offset), then reads the asciicast by HTTP
// ranges from the offset of the moment it plays or seeks to. It never
// downloads the whole recording to start or to seek.

// indexStep is the bytes of recording between two index points.
const indexStep = 64 << 10

// A recording up to fullScanMax bytes is indexed by one pass over it. A
// larger one is probed: maxPoints reads of a few KiB, spread evenly, each
// finding the first event line after its offset (an event line is one
// line: asciicast escapes newlines in its strings). Event times only grow,
// so the points are an index as good as the full pass's, at a coarser
// step: a 1 GiB recording opens in milliseconds instead of seconds.
const (
	fullScanMax = 64 << 20
	maxPoints   = 2048
	probeSize   = 8 << 10
)

// recIndex is a recording's time → offset index: Points[i] is the time
// (seconds) of the event line starting at byte Offsets[i]; the first is
// the first event.
type recIndex struct {
	Width    int       `json:"width"`
	Height   int       `json:"height"`
	Length   int64     `json:"length"`
	Duration float64   `json:"duration"`
	Times    []float64 `json:"times"`
	Offsets  []int64   `json:"offsets"`
}

// buildIndex indexes a recording: by one pass (scanIndex) or, when it is
// large, by probes (probeIndex).
func buildIndex(ra io.ReaderAt, size int64) (*recIndex, error) {
	if size > fullScanMax {
		return probeIndex(ra, size)
	}
	return scanIndex(ra, size)
}

// readHeader reads the recording's header line.
func readHeader(br *bufio.Reader, size int64) (*recIndex, []byte, error) {
	header, err := br.ReadSlice('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(header) > 0) {
		return nil, nil, errors.New("recording has no header")
	}
	var h asciicast.Header
	if err := json.Unmarshal(bytes.TrimSpace(header), &h); err != nil {
		return nil, nil, errors.New("recording header: " + err.Error())
	}
	return &recIndex{Width: h.Width, Height: h.Height, Length: size}, header, nil
}

// lineTime is the time of an event line ("[<time>, ..."), if it is one.
func lineTime(line []byte) (float64, bool) {
	if len(line) > 2 && line[0] == '[' {
		if i := bytes.IndexByte(line, ','); i > 1 {
			if t, err := strconv.ParseFloat(string(line[1:i]), 64); err == nil {
				return t, true
			}
		}
	}
	return 0, false
}

// probeIndex indexes a large recording with maxPoints small reads, and
// one of its end for the duration.
func probeIndex(ra io.ReaderAt, size int64) (*recIndex, error) {
	ix, header, err := readHeader(bufio.NewReaderSize(io.NewSectionReader(ra, 0, size), 64<<10), size)
	if err != nil {
		return nil, err
	}
	step := max(int64(indexStep), size/maxPoints)
	buf := make([]byte, probeSize)
	for at := int64(len(header)); at < size; at += step {
		n, err := ra.ReadAt(buf, at)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		b := buf[:n]
		// The first line starting at or after at (at itself when the
		// byte before it ends a line).
		start := 0
		if at > int64(len(header)) {
			var prev [1]byte
			if _, err := ra.ReadAt(prev[:], at-1); err != nil {
				return nil, err
			}
			if prev[0] != '\n' {
				i := bytes.IndexByte(b, '\n')
				if i < 0 {
					continue // a line longer than a probe: no point here
				}
				start = i + 1
			}
		}
		off := at + int64(start)
		if t, ok := lineTime(b[start:]); ok && (len(ix.Offsets) == 0 || off > ix.Offsets[len(ix.Offsets)-1] && t >= ix.Times[len(ix.Times)-1]) {
			ix.Times = append(ix.Times, t)
			ix.Offsets = append(ix.Offsets, off)
			ix.Duration = t
		}
	}
	// The duration is the time of the last event line.
	for back := int64(probeSize); ; back *= 4 {
		from := max(int64(len(header)), size-back)
		tail := make([]byte, size-from)
		if _, err := ra.ReadAt(tail, from); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		lines := bytes.Split(tail, []byte("\n"))
		if from > int64(len(header)) {
			lines = lines[1:] // the first may be a line's end
		}
		for i := len(lines) - 1; i >= 0; i-- {
			if t, ok := lineTime(lines[i]); ok {
				ix.Duration = max(ix.Duration, t)
				return ix, nil
			}
		}
		if from == int64(len(header)) || back > 64<<20 {
			return ix, nil
		}
	}
}

// scanIndex scans a recording once. Only each line's time is parsed
// (the text between "[" and the first ","), so it runs at disk speed.
func scanIndex(ra io.ReaderAt, size int64) (*recIndex, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(ra, 0, size), 256<<10)
	ix, header, err := readHeader(br, size)
	if err != nil {
		return nil, err
	}
	off := int64(len(header))
	next := off
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: skip to its end (its time was not needed).
			n := int64(len(line))
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				n += int64(len(line))
			}
			off += n
			continue
		}
		if t, ok := lineTime(line); ok {
			if off >= next {
				ix.Times = append(ix.Times, t)
				ix.Offsets = append(ix.Offsets, off)
				next = off + indexStep
			}
			ix.Duration = t
		}
		off += int64(len(line))
		if err != nil {
			if errors.Is(err, io.EOF) {
				return ix, nil
			}
			return nil, err
		}
	}
}

// indexCache keeps the indexes of recently played recordings. An entry is
// good for one length (a live recording grows).
type indexCache struct {
	mu  sync.Mutex
	ll  *list.List
	m   map[string]*list.Element
	max int
}

type indexEntry struct {
	id string
	ix *recIndex
}

func newIndexCache(max int) *indexCache {
	return &indexCache{ll: list.New(), m: map[string]*list.Element{}, max: max}
}

func (c *indexCache) get(id string, length int64) *recIndex {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok && e.Value.(*indexEntry).ix.Length == length {
		c.ll.MoveToFront(e)
		return e.Value.(*indexEntry).ix
	}
	return nil
}

func (c *indexCache) put(id string, ix *recIndex) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok {
		e.Value.(*indexEntry).ix = ix
		c.ll.MoveToFront(e)
		return
	}
	c.m[id] = c.ll.PushFront(&indexEntry{id: id, ix: ix})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*indexEntry).id)
	}
}

type playerData struct {
	ID, User, Login, Node string
	Start                 time.Time
	// At is where to start playing (seconds), from a search result.
	At string
	// Search is the command search to show (from the recordings list).
	Search string
}

// playerPage shows the player of a recording.
func (h *Handler) playerPage(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	f, err := h.auth.OpenRecordingAt(r.Context(), c, r.PathValue("id"))
	if err != nil {
		h.renderError(w, r, s, statusOf(err), h.message(err))
		return
	}
	f.Close()
	at := r.URL.Query().Get("t")
	if _, err := strconv.ParseFloat(at, 64); err != nil {
		at = ""
	}
	v := h.view(s, "Recording "+f.Info.SessionID, "recordings", playerData{ID: f.Info.SessionID, User: f.Info.User,
		Login: f.Info.Login, Node: f.Info.Node, Start: f.Info.Start, At: at, Search: r.URL.Query().Get("q")})
	h.renderTerminal(w, v, "player")
}

// recordingIndex answers the recording's time → offset index (JSON).
func (h *Handler) recordingIndex(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	f, err := h.auth.OpenRecordingAt(r.Context(), c, r.PathValue("id"))
	if err != nil {
		http.Error(w, h.message(err), statusOf(err))
		return
	}
	defer f.Close()
	ix := h.indexes.get(f.Info.SessionID, f.Size)
	if ix == nil {
		if ix, err = buildIndex(f, f.Size); err != nil {
			http.Error(w, "the recording cannot be read: "+err.Error(), http.StatusUnprocessableEntity)
			return
		}
		h.indexes.put(f.Info.SessionID, ix)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ix)
}

// recordingCast serves the recording's bytes, by HTTP range.
func (h *Handler) recordingCast(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	f, err := h.auth.OpenRecordingAt(r.Context(), c, r.PathValue("id"))
	if err != nil {
		http.Error(w, h.message(err), statusOf(err))
		return
	}
	defer f.Close()
	// A read that meets an altered block stops the response where the
	// block begins; checking the range's blocks first answers such a
	// request with the reason instead (the player reads CHUNK bytes at a
	// time: a block or two).
	if start, end, ok := singleRange(r.Header.Get("Range"), f.Size); ok {
		if err := checkBlocks(f, start, end); err != nil {
			http.Error(w, h.message(err), statusOf(err))
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-asciicast")
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(f, 0, f.Size))
}

// singleRange parses a Range header of one range, "bytes=START-END" or
// "bytes=START-", within size bytes.
func singleRange(h string, size int64) (start, end int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(spec, "-")
	start, err := strconv.ParseInt(a, 10, 64)
	if !found || err != nil || start < 0 || start >= size {
		return 0, 0, false
	}
	end = size - 1
	if b != "" {
		if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
			return 0, 0, false
		}
		end = min(end, size-1)
	}
	return start, end, true
}

// checkBlocks reads a byte of each of the first blocks (at most 8) of
// start..end, which makes the reader check them.
func checkBlocks(ra io.ReaderAt, start, end int64) error {
	var b [1]byte
	last := min(end, start+8*recording.BlockSize-1)
	for off := start; off <= last; off = (off/recording.BlockSize + 1) * recording.BlockSize {
		if _, err := ra.ReadAt(b[:], off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}

type searchHit struct {
	Time float64 `json:"t"`
	Type string  `json:"type"`
	Line string  `json:"line"`
}

// recordingSearch finds a typed command (or output) in one recording and
// answers when each match happened (JSON), for the player to jump there.
func (h *Handler) recordingSearch(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	q := r.URL.Query().Get("q")
	if q == "" || len(q) > 256 {
		http.Error(w, "search text must be 1 to 256 bytes", http.StatusBadRequest)
		return
	}
	rs, err := h.auth.OpenRecording(r.Context(), c, r.PathValue("id"))
	if err != nil {
		http.Error(w, h.message(err), statusOf(err))
		return
	}
	defer rs.Close()
	rd, err := asciicast.NewReader(rs)
	if err != nil {
		http.Error(w, "the recording cannot be read: "+err.Error(), http.StatusUnprocessableEntity)
		return
	}
	ms, err := asciicast.Search(rd, q, 100)
	if err != nil {
		http.Error(w, "search: "+err.Error(), http.StatusUnprocessableEntity)
		return
	}
	hits := make([]searchHit, 0, len(ms))
	for _, m := range ms {
		hits = append(hits, searchHit{Time: m.Offset.Seconds(), Type: m.Type, Line: m.Line})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(hits)
}

// playURL is the player's link for a recording, at a moment.
func playURL(id string, at time.Duration, q string) string {
	v := url.Values{}
	if at > 0 {
		v.Set("t", strconv.FormatFloat(at.Seconds(), 'f', 3, 64))
	}
	if q != "" {
		v.Set("q", q)
	}
	u := Prefix + "recordings/" + url.PathEscape(id) + "/play"
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return u
}
