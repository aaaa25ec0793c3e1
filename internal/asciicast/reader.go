package asciicast

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Default limits for ReaderOptions.
const (
	DefaultMaxLineBytes   = 1 << 20  // one event line
	DefaultMaxHeaderBytes = 64 << 10 // the header line
	// MaxTime is the largest event time accepted, in seconds (about 31
	// years); it keeps times convertible to time.Duration.
	MaxTime = 1e9
	// timeSlack is how far an event may go back in time before it is an
	// error; smaller steps are float noise and are clamped.
	timeSlack = 1e-6
)

// ErrLineTooLong is wrapped by errors for lines longer than the limit.
var ErrLineTooLong = errors.New("line too long")

// SyntaxError describes a malformed or invalid line of a recording.
type SyntaxError struct {
	Line int // 1-based line number; the header is line 1
	Err  error
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("asciicast: line %d: %v", e.Line, e.Err)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// ReaderOptions bounds what a Reader accepts. Zero fields take defaults.
type ReaderOptions struct {
	MaxLineBytes   int
	MaxHeaderBytes int
}

// Event is one recorded event.
type Event struct {
	// Time is seconds since the start of the recording.
	Time float64
	// Type is one of TypeOutput, TypeInput, TypeResize, TypeMarker.
	Type string
	// Data is valid UTF-8.
	Data string
}

// Offset returns Time as a duration.
func (e Event) Offset() time.Duration {
	return secondsToDuration(e.Time)
}

func secondsToDuration(s float64) time.Duration {
	return time.Duration(math.Round(s * float64(time.Second)))
}

// Reader reads an asciicast v2 recording event by event. It is not safe
// for concurrent use.
type Reader struct {
	br      *bufio.Reader
	opt     ReaderOptions
	header  Header
	lineNo  int
	last    float64
	line    []byte
	err     error
	scratch []json.RawMessage
}

// NewReader reads and validates the header with default limits.
func NewReader(r io.Reader) (*Reader, error) {
	return NewReaderOptions(r, ReaderOptions{})
}

// NewReaderOptions reads and validates the header with the given limits.
func NewReaderOptions(r io.Reader, opt ReaderOptions) (*Reader, error) {
	if opt.MaxLineBytes <= 0 {
		opt.MaxLineBytes = DefaultMaxLineBytes
	}
	if opt.MaxHeaderBytes <= 0 {
		opt.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10), opt: opt}
	line, err := rd.readLine(opt.MaxHeaderBytes)
	if err == io.EOF {
		return nil, &SyntaxError{Line: 1, Err: errors.New("empty recording: no header")}
	}
	if err != nil {
		return nil, err
	}
	h, err := parseHeader(line)
	if err != nil {
		return nil, &SyntaxError{Line: rd.lineNo, Err: err}
	}
	rd.header = h
	return rd, nil
}

func parseHeader(line []byte) (Header, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return Header{}, errors.New("header: not a JSON object")
	}
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		return Header{}, fmt.Errorf("header: %w", err)
	}
	if v.Version == nil {
		return Header{}, errors.New("header: missing version")
	}
	if *v.Version != Version {
		return Header{}, fmt.Errorf("header: unsupported version %d (want %d)", *v.Version, Version)
	}
	var h Header
	if err := json.Unmarshal(line, &h); err != nil {
		return Header{}, fmt.Errorf("header: %w", err)
	}
	if err := h.Validate(); err != nil {
		return Header{}, fmt.Errorf("header: %w", err)
	}
	return h, nil
}

// Header returns the recording's header.
func (r *Reader) Header() Header { return r.header }

// Next returns the next event, or io.EOF after the last one. Errors are
// sticky. Times that go back by less than a microsecond are clamped to the
// previous event's time; anything more is an error.
func (r *Reader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	for {
		line, err := r.readLine(r.opt.MaxLineBytes)
		if err != nil {
			r.err = err
			return Event{}, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		ev, err := r.parseEvent(line)
		if err != nil {
			r.err = &SyntaxError{Line: r.lineNo, Err: err}
			return Event{}, r.err
		}
		return ev, nil
	}
}

func (r *Reader) parseEvent(line []byte) (Event, error) {
	if line[0] != '[' {
		return Event{}, errors.New("event: not a JSON array")
	}
	parts := r.scratch[:0]
	if err := json.Unmarshal(line, &parts); err != nil {
		return Event{}, fmt.Errorf("event: %w", err)
	}
	r.scratch = parts
	if len(parts) != 3 {
		return Event{}, fmt.Errorf("event: %d elements, want 3", len(parts))
	}
	var ev Event
	if err := json.Unmarshal(parts[0], &ev.Time); err != nil {
		return Event{}, fmt.Errorf("event time: %w", err)
	}
	if err := json.Unmarshal(parts[1], &ev.Type); err != nil {
		return Event{}, fmt.Errorf("event type: %w", err)
	}
	if err := json.Unmarshal(parts[2], &ev.Data); err != nil {
		return Event{}, fmt.Errorf("event data: %w", err)
	}
	if math.IsNaN(ev.Time) || ev.Time < 0 || ev.Time > MaxTime {
		return Event{}, fmt.Errorf("event time %v out of range 0..%v", ev.Time, float64(MaxTime))
	}
	if ev.Time < r.last {
		if ev.Time < r.last-timeSlack {
			return Event{}, fmt.Errorf("event time %v before previous %v", ev.Time, r.last)
		}
		ev.Time = r.last
	}
	switch ev.Type {
	case TypeOutput, TypeInput, TypeMarker:
	case TypeResize:
		if _, _, err := ParseResize(ev.Data); err != nil {
			return Event{}, err
		}
	default:
		return Event{}, fmt.Errorf("unknown event type %q", truncate(ev.Type, 16))
	}
	r.last = ev.Time
	return ev, nil
}

// ParseResize parses the data of a resize event, "COLSxROWS".
func ParseResize(data string) (cols, rows int, err error) {
	c, rs, ok := strings.Cut(data, "x")
	if ok {
		cols, err = strconv.Atoi(c)
		if err == nil {
			rows, err = strconv.Atoi(rs)
		}
	}
	if !ok || err != nil || !isDigits(c) || !isDigits(rs) {
		return 0, 0, fmt.Errorf("resize %q: want COLSxROWS", truncate(data, 32))
	}
	if err := checkDimensions(cols, rows); err != nil {
		return 0, 0, fmt.Errorf("resize: %w", err)
	}
	return cols, rows, nil
}

func isDigits(s string) bool {
	if s == "" || len(s) > 6 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// readLine returns the next line without its terminator, or io.EOF. The
// returned slice is valid until the next call. Lines longer than max bytes
// are an error, detected without buffering more than max bytes.
func (r *Reader) readLine(max int) ([]byte, error) {
	r.line = r.line[:0]
	r.lineNo++
	for {
		frag, err := r.br.ReadSlice('\n')
		content := len(r.line) + len(frag)
		if len(frag) > 0 && frag[len(frag)-1] == '\n' {
			content--
		}
		if content > max {
			return nil, &SyntaxError{Line: r.lineNo, Err: fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, max)}
		}
		r.line = append(r.line, frag...)
		switch err {
		case nil:
			return bytes.TrimSuffix(r.line[:len(r.line)-1], []byte{'\r'}), nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(r.line) == 0 {
				return nil, io.EOF
			}
			return r.line, nil
		default:
			return nil, fmt.Errorf("asciicast: read line %d: %w", r.lineNo, err)
		}
	}
}
