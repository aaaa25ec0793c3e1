package asciicast

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const hdr = `{"version": 2, "width": 80, "height": 24, "timestamp": 1700000000, "env": {"TERM": "xterm", "SHELL": "/bin/sh"}}` + "\n"

// readErr reads a whole recording and returns the first error other than
// io.EOF, from NewReader or Next.
func readErr(input string, opt ReaderOptions) error {
	r, err := NewReaderOptions(strings.NewReader(input), opt)
	if err != nil {
		return err
	}
	for {
		if _, err := r.Next(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

func TestReaderRejects(t *testing.T) {
	t.Parallel()
	small := ReaderOptions{MaxLineBytes: 64, MaxHeaderBytes: 128}
	tests := []struct {
		name     string
		input    string
		opt      ReaderOptions
		wantLine int
		wantErr  string
	}{
		{"empty", "", ReaderOptions{}, 1, "no header"},
		{"header not JSON", "hello\n", ReaderOptions{}, 1, "not a JSON object"},
		{"header array", `[0.1, "o", "x"]` + "\n", ReaderOptions{}, 1, "not a JSON object"},
		{"header bad JSON", `{"version": 2, "width": 80,` + "\n", ReaderOptions{}, 1, "header"},
		{"missing version", `{"width": 80, "height": 24}` + "\n", ReaderOptions{}, 1, "missing version"},
		{"version 1", `{"version": 1, "width": 80, "height": 24, "stdout": []}` + "\n", ReaderOptions{}, 1, "unsupported version 1"},
		{"version 3", `{"version": 3, "term": {"cols": 80, "rows": 24}}` + "\n", ReaderOptions{}, 1, "unsupported version 3"},
		{"zero width", `{"version": 2, "width": 0, "height": 24}` + "\n", ReaderOptions{}, 1, "width 0"},
		{"huge height", `{"version": 2, "width": 80, "height": 100000}` + "\n", ReaderOptions{}, 1, "height 100000"},
		{"width wrong type", `{"version": 2, "width": "80", "height": 24}` + "\n", ReaderOptions{}, 1, "header"},
		{"header too long", `{"version": 2, "width": 80, "height": 24, "title": "` + strings.Repeat("x", 200) + `"}` + "\n", small, 1, "line too long"},
		{"event line too long", hdr + `[0.1, "o", "` + strings.Repeat("x", 100) + `"]` + "\n", small, 2, "line too long"},
		{"huge line default limit", hdr + `[0.1, "o", "` + strings.Repeat("x", DefaultMaxLineBytes) + `"]` + "\n", ReaderOptions{}, 2, "line too long"},
		{"bad JSON", hdr + `[0.1, "o", "x"` + "\n", ReaderOptions{}, 2, "event"},
		{"object event", hdr + `{"t": 1}` + "\n", ReaderOptions{}, 2, "not a JSON array"},
		{"two elements", hdr + `[0.1, "o"]` + "\n", ReaderOptions{}, 2, "2 elements"},
		{"four elements", hdr + `[0.1, "o", "x", 1]` + "\n", ReaderOptions{}, 2, "4 elements"},
		{"string time", hdr + `["0.1", "o", "x"]` + "\n", ReaderOptions{}, 2, "event time"},
		{"negative time", hdr + `[-0.5, "o", "x"]` + "\n", ReaderOptions{}, 2, "out of range"},
		{"huge time", hdr + `[1e300, "o", "x"]` + "\n", ReaderOptions{}, 2, "out of range"},
		{"decreasing time", hdr + `[2.0, "o", "a"]` + "\n" + `[1.0, "o", "b"]` + "\n", ReaderOptions{}, 3, "before previous"},
		{"unknown type", hdr + `[0.1, "x", "a"]` + "\n", ReaderOptions{}, 2, `unknown event type "x"`},
		{"type not string", hdr + `[0.1, 1, "a"]` + "\n", ReaderOptions{}, 2, "event type"},
		{"data not string", hdr + `[0.1, "o", 5]` + "\n", ReaderOptions{}, 2, "event data"},
		{"bad resize", hdr + `[0.1, "r", "80-24"]` + "\n", ReaderOptions{}, 2, "COLSxROWS"},
		{"resize zero", hdr + `[0.1, "r", "0x24"]` + "\n", ReaderOptions{}, 2, "width 0"},
		{"error after blank lines", hdr + "\n\n" + `[0.1, "q", ""]` + "\n", ReaderOptions{}, 4, "unknown event type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := readErr(tt.input, tt.opt)
			if err == nil {
				t.Fatal("accepted")
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SyntaxError", err)
			}
			if se.Line != tt.wantLine {
				t.Errorf("line = %d, want %d (%v)", se.Line, tt.wantLine, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestReaderAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		want  []Event
	}{
		{"header only", hdr, nil},
		{"no trailing newline", hdr + `[0.5, "o", "x"]`, []Event{{0.5, "o", "x"}}},
		{"CRLF and blank lines", strings.ReplaceAll(hdr, "\n", "\r\n") + "\r\n" + `[0.5, "o", "x"]` + "\r\n\n  \n", []Event{{0.5, "o", "x"}}},
		{"float noise clamped", hdr + `[1.0000005, "o", "a"]` + "\n" + `[1.0, "o", "b"]` + "\n", []Event{{1.0000005, "o", "a"}, {1.0000005, "o", "b"}}},
		{"all types", hdr + `[0, "o", "a"]` + "\n" + `[0, "i", "b"]` + "\n" + `[1, "r", "100x30"]` + "\n" + `[2, "m", ""]` + "\n",
			[]Event{{0, "o", "a"}, {0, "i", "b"}, {1, "r", "100x30"}, {2, "m", ""}}},
		{"escapes and invalid UTF-8", hdr + "[0, \"o\", \"\\u001b[0m\\ud800 \xff\"]\n", []Event{{0, "o", "\x1b[0m\ufffd \ufffd"}}},
		{"unknown header fields", `{"version": 2, "width": 80, "height": 24, "future": {"x": 1}, "theme": {"fg": "#fff", "bg": "#000", "palette": "a:b"}}` + "\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, evs := readAll(t, []byte(tt.input))
			if diff := cmp.Diff(tt.want, evs); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReaderErrorsAreSticky(t *testing.T) {
	t.Parallel()
	r, err := NewReader(strings.NewReader(hdr + `[1, "?", ""]` + "\n" + `[2, "o", "x"]` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err1 := r.Next()
	_, err2 := r.Next()
	if err1 == nil || err1 != err2 {
		t.Errorf("errors %v then %v, want the same error twice", err1, err2)
	}
}

func TestReaderHeader(t *testing.T) {
	t.Parallel()
	r, err := NewReader(strings.NewReader(`{"version": 2, "width": 100, "height": 30, "timestamp": 1700000000, "idle_time_limit": 2.5, "title": "t", "env": {"TERM": "xterm"}}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Version: 2, Width: 100, Height: 30, Timestamp: 1700000000, IdleTimeLimit: 2.5, Title: "t", Env: map[string]string{"TERM": "xterm"}}
	if diff := cmp.Diff(want, r.Header()); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
}

func TestParseResize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in         string
		cols, rows int
		ok         bool
	}{
		{"80x24", 80, 24, true},
		{"10000x1", 10000, 1, true},
		{"80X24", 0, 0, false},
		{"80x", 0, 0, false},
		{"x24", 0, 0, false},
		{"+80x24", 0, 0, false},
		{"80x-24", 0, 0, false},
		{" 80x24", 0, 0, false},
		{"80x24x1", 0, 0, false},
		{"10001x24", 0, 0, false},
		{"99999999999999999999x1", 0, 0, false},
	}
	for _, tt := range tests {
		c, r, err := ParseResize(tt.in)
		if (err == nil) != tt.ok || c != tt.cols || r != tt.rows {
			t.Errorf("ParseResize(%q) = %d, %d, %v; want %d, %d, ok=%v", tt.in, c, r, err, tt.cols, tt.rows, tt.ok)
		}
	}
}
