package asciicast

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Search limits.
const (
	// maxSearchLine wraps assembled lines longer than this many runes, so
	// output without newlines cannot grow a line without bound.
	maxSearchLine = 4096
	// MaxMatchLine is the most runes of a line a Match carries.
	MaxMatchLine = 200
)

// Match is a line of a recording that contains the searched text.
type Match struct {
	// Offset is when the line started: the time of the event that put the
	// first character of the line on screen (for output) or of the first
	// keystroke of the line (for input).
	Offset time.Duration
	// Type is TypeOutput or TypeInput.
	Type string
	// Line is the matched line with escape sequences removed and spaces
	// trimmed; lines longer than MaxMatchLine runes are cut to a window
	// around the match.
	Line string
}

// Search finds lines containing text, compared case-insensitively, in a
// recording's output and in its typed input.
//
// Output is assembled into lines across event boundaries the way a terminal
// shows them: escape sequences are removed (cursor movement within the line,
// erase-in-line, delete and insert characters are applied), \r returns to
// the start of the line and overwrites, backspace moves left, and \n or a
// cursor move to another row ends the line. So a command echoed one
// keystroke per event is found whole.
//
// Input is assembled into typed lines: \r or \n ends a line, backspace or
// DEL removes the last character, ^U clears the line, ^W removes the last
// word, ^C abandons the line, and escape sequences (arrow keys) are ignored.
//
// Matches are returned sorted by Offset. When limit > 0, reading stops once
// limit lines have matched (the first limit lines to be completed).
func Search(r *Reader, text string, limit int) ([]Match, error) {
	if text == "" {
		return nil, errors.New("asciicast: search: empty text")
	}
	s := &searcher{query: strings.Map(unicode.ToLower, text), limit: limit}
	s.queryRunes = utf8.RuneCountInString(s.query)
	s.output.emit = func(line []rune, start time.Duration) { s.check(TypeOutput, line, start) }
	s.input.emit = func(line []rune, start time.Duration) { s.check(TypeInput, line, start) }
	for !s.full() {
		ev, err := r.Next()
		if err == io.EOF {
			s.output.flush()
			s.input.flush()
			break
		}
		if err != nil {
			return s.sorted(), fmt.Errorf("asciicast: search: %w", err)
		}
		switch ev.Type {
		case TypeOutput:
			s.output.feed(ev.Offset(), ev.Data)
		case TypeInput:
			s.input.feed(ev.Offset(), ev.Data)
		}
	}
	return s.sorted(), nil
}

type searcher struct {
	query      string
	queryRunes int
	limit      int
	matches    []Match
	output     screenLine
	input      typedLine
	lower      strings.Builder
}

func (s *searcher) full() bool { return s.limit > 0 && len(s.matches) >= s.limit }

func (s *searcher) sorted() []Match {
	slices.SortStableFunc(s.matches, func(a, b Match) int {
		return cmp.Compare(a.Offset, b.Offset)
	})
	return s.matches
}

func (s *searcher) check(typ string, line []rune, start time.Duration) {
	if s.full() {
		return
	}
	s.lower.Reset()
	for _, r := range line {
		s.lower.WriteRune(unicode.ToLower(r))
	}
	lowered := s.lower.String()
	idx := strings.Index(lowered, s.query)
	if idx < 0 {
		return
	}
	at := utf8.RuneCountInString(lowered[:idx])
	lo, hi := 0, len(line)
	for lo < hi && unicode.IsSpace(line[lo]) {
		lo++
	}
	for hi > lo && unicode.IsSpace(line[hi-1]) {
		hi--
	}
	if hi-lo > MaxMatchLine {
		// Show some context before the match, then as much after as fits.
		a := max(lo, at-(MaxMatchLine-s.queryRunes)/4)
		b := min(hi, a+MaxMatchLine)
		lo, hi = max(lo, b-MaxMatchLine), b
	}
	s.matches = append(s.matches, Match{
		Offset: start,
		Type:   typ,
		Line:   strings.TrimSpace(string(line[lo:hi])),
	})
}

// lineBuf is a line being assembled and when it started.
type lineBuf struct {
	runes   []rune
	started bool
	start   time.Duration
	emit    func(line []rune, start time.Duration)
}

func (l *lineBuf) begin(at time.Duration) {
	if !l.started {
		l.started = true
		l.start = at
	}
}

// flush hands a non-blank line to emit and starts a new one.
func (l *lineBuf) flush() {
	if l.started && slices.ContainsFunc(l.runes, func(r rune) bool { return !unicode.IsSpace(r) }) {
		l.emit(l.runes, l.start)
	}
	l.runes = l.runes[:0]
	l.started = false
}

// screenLine assembles output into lines like a terminal row.
type screenLine struct {
	lineBuf
	vt     vtParser
	cursor int
}

func (o *screenLine) feed(at time.Duration, data string) {
	for _, r := range data {
		act, final := o.vt.step(r)
		switch act {
		case vtPrint:
			o.put(at, r)
		case vtControl:
			o.control(r)
		case vtCSIDone:
			o.csi(final)
		}
	}
}

func (o *screenLine) put(at time.Duration, r rune) {
	o.begin(at)
	for len(o.runes) < o.cursor {
		o.runes = append(o.runes, ' ')
	}
	if o.cursor == len(o.runes) {
		o.runes = append(o.runes, r)
	} else {
		o.runes[o.cursor] = r
	}
	o.cursor++
	if len(o.runes) >= maxSearchLine {
		o.newLine(0)
	}
}

func (o *screenLine) control(r rune) {
	switch r {
	case '\n', '\v', '\f':
		o.newLine(0)
	case '\r':
		o.cursor = 0
	case '\b':
		if o.cursor > 0 {
			o.cursor--
		}
	case '\t':
		o.cursor = min((o.cursor/8+1)*8, maxSearchLine-1)
	}
}

func (o *screenLine) newLine(cursor int) {
	o.flush()
	o.cursor = min(max(cursor, 0), maxSearchLine-1)
}

func (o *screenLine) csi(final rune) {
	n := o.vt.csiParam(0, 1)
	switch final {
	case 'C': // cursor forward
		o.cursor = min(o.cursor+n, maxSearchLine-1)
	case 'D': // cursor back
		o.cursor = max(o.cursor-n, 0)
	case 'G', '`': // cursor to column
		o.cursor = min(n-1, maxSearchLine-1)
	case 'K': // erase in line
		switch o.vt.csiParam(0, 0) {
		case 0:
			if o.cursor < len(o.runes) {
				o.runes = o.runes[:o.cursor]
			}
		case 1:
			for i := 0; i <= o.cursor && i < len(o.runes); i++ {
				o.runes[i] = ' '
			}
		case 2:
			for i := range o.runes {
				o.runes[i] = ' '
			}
		}
	case 'P': // delete characters
		if o.cursor < len(o.runes) {
			end := min(o.cursor+n, len(o.runes))
			o.runes = append(o.runes[:o.cursor], o.runes[end:]...)
		}
	case '@': // insert blanks
		if o.cursor < len(o.runes) {
			n = min(n, maxSearchLine-len(o.runes))
			o.runes = slices.Insert(o.runes, o.cursor, slices.Repeat([]rune{' '}, n)...)
		}
	case 'H', 'f': // cursor position: another row
		o.newLine(o.vt.csiParam(1, 1) - 1)
	case 'A', 'B', 'd', 'e': // up, down, to row: same column
		o.newLine(o.cursor)
	case 'E', 'F': // next, previous line
		o.newLine(0)
	case 'J': // erase in display
		o.newLine(o.cursor)
	}
}

// typedLine assembles input keystrokes into typed lines.
type typedLine struct {
	lineBuf
	vt vtParser
}

func (in *typedLine) feed(at time.Duration, data string) {
	// Keystrokes arrive one key per event: a lone ESC must not swallow
	// the next key.
	in.vt = vtParser{}
	for _, r := range data {
		act, _ := in.vt.step(r)
		switch act {
		case vtPrint:
			in.begin(at)
			in.runes = append(in.runes, r)
			if len(in.runes) >= maxSearchLine {
				in.flush()
			}
		case vtControl:
			in.control(r)
		}
	}
}

func (in *typedLine) control(r rune) {
	switch r {
	case '\r', '\n':
		in.flush()
	case 0x7f, '\b':
		if len(in.runes) > 0 {
			in.runes = in.runes[:len(in.runes)-1]
		}
	case 0x17: // ^W: delete the word before the cursor
		n := len(in.runes)
		for n > 0 && unicode.IsSpace(in.runes[n-1]) {
			n--
		}
		for n > 0 && !unicode.IsSpace(in.runes[n-1]) {
			n--
		}
		in.runes = in.runes[:n]
	case 0x15, 0x03: // ^U clears, ^C abandons
		in.runes = in.runes[:0]
	}
	if len(in.runes) == 0 {
		in.started = false
	}
}
