package asciicast

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

type ev struct {
	sec  float64
	typ  string
	data string
}

// record writes events with the real Writer and returns a Reader over them.
func record(t *testing.T, evs []ev) *Reader {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader(), t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		switch e.typ {
		case "o":
			err = w.Output(at(e.sec), []byte(e.data))
		case "i":
			err = w.Input(at(e.sec), []byte(e.data))
		case "m":
			err = w.Marker(at(e.sec), e.data)
		default:
			t.Fatalf("bad type %q", e.typ)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// session is a shell session typed one key at a time, echoed back.
var session = []ev{
	{0.5, "o", "\x1b]0;alice@web-1: ~\a\x1b[01;32malice@web-1\x1b[00m:\x1b[01;34m~\x1b[00m$ "},
	{2.0, "i", "l"},
	{2.0, "o", "l"},
	{2.2, "i", "x"},
	{2.2, "o", "x"},
	{2.4, "i", "\x7f"},
	{2.4, "o", "\b\x1b[K"},
	{2.6, "i", "s"},
	{2.6, "o", "s"},
	{2.8, "i", " -la\r"},
	{2.8, "o", " -la\r\n"},
	{2.9, "o", "total 8\r\n\x1b[01;34mSecrets\x1b[0m  notes.txt\r\n"},
	{3.0, "m", "ls done"},
	{4.0, "o", "alice@web-1:~$ "},
	{5.0, "i", "sudo cat /etc/SHAD"},
	{5.0, "o", "sudo cat /etc/SHAD"},
	{5.5, "i", "\x15"},
	{5.5, "o", "\r\x1b[Kalice@web-1:~$ "},
	{6.0, "i", "echo hi\x1b[D\x1b[C\r"},
	{6.0, "o", "echo hi\r\nhi\r\n"},
}

func TestSearch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		evs   []ev
		text  string
		limit int
		want  []Match
	}{
		{
			name: "typed command from keystroke echoes",
			evs:  session, text: "ls -la",
			want: []Match{
				{Offset: sec(0.5), Type: "o", Line: "alice@web-1:~$ ls -la"},
				{Offset: sec(2.0), Type: "i", Line: "ls -la"},
			},
		},
		{
			name: "case-insensitive, escapes stripped",
			evs:  session, text: "SECRETS",
			want: []Match{{Offset: sec(2.9), Type: "o", Line: "Secrets  notes.txt"}},
		},
		{
			// ^U abandons the typed line and the shell erases it: the
			// search reflects what the screen finally showed.
			name: "abandoned and erased line",
			evs:  session, text: "/etc/shad",
			want: nil,
		},
		{
			name: "arrow keys ignored in input",
			evs:  session, text: "echo hi",
			want: []Match{
				{Offset: sec(4.0), Type: "o", Line: "alice@web-1:~$ echo hi"},
				{Offset: sec(6.0), Type: "i", Line: "echo hi"},
			},
		},
		{
			name: "limit",
			evs:  session, text: "alice", limit: 2,
			want: []Match{
				{Offset: sec(0.5), Type: "o", Line: "alice@web-1:~$ ls -la"},
				{Offset: sec(4.0), Type: "o", Line: "alice@web-1:~$ echo hi"},
			},
		},
		{
			name: "OSC title is not text",
			evs:  session, text: "web-1: ~",
			want: nil,
		},
		{
			name: "carriage return overwrites",
			evs:  []ev{{1, "o", "progress 10%\r"}, {2, "o", "progress 99%\r\n"}},
			text: "progress",
			want: []Match{{Offset: sec(1), Type: "o", Line: "progress 99%"}},
		},
		{
			name: "line split across events mid escape",
			evs:  []ev{{1, "o", "err\x1b[3"}, {2, "o", "1mor: disk\x1b[0m full\n"}},
			text: "error: disk full",
			want: []Match{{Offset: sec(1), Type: "o", Line: "error: disk full"}},
		},
		{
			name: "cursor position starts a new line",
			evs:  []ev{{1, "o", "\x1b[1;1Htop line\x1b[2;5Hsecond"}},
			text: "second",
			want: []Match{{Offset: sec(1), Type: "o", Line: "second"}},
		},
		{
			name: "delete character",
			evs:  []ev{{1, "o", "rmm\b\x1b[P -rf /\r\n"}},
			text: "rm -rf",
			want: []Match{{Offset: sec(1), Type: "o", Line: "rm -rf /"}},
		},
		{
			name: "unterminated last line",
			evs:  []ev{{1, "i", "exit"}, {1, "o", "exit"}},
			text: "EXIT",
			want: []Match{{Offset: sec(1), Type: "o", Line: "exit"}, {Offset: sec(1), Type: "i", Line: "exit"}},
		},
		{
			name: "ctrl-w removes a word",
			evs:  []ev{{1, "i", "rm -rf /"}, {2, "i", "\x17tmp/x\r"}},
			text: "-rf tmp",
			want: []Match{{Offset: sec(1), Type: "i", Line: "rm -rf tmp/x"}},
		},
		{
			name: "backspace to empty restarts line time",
			evs:  []ev{{1, "i", "x"}, {2, "i", "\x7f"}, {3, "i", "whoami\r"}},
			text: "whoami",
			want: []Match{{Offset: sec(3), Type: "i", Line: "whoami"}},
		},
		{
			name: "unicode case folding",
			evs:  []ev{{1, "o", "ÉCOLE ünïcode\n"}},
			text: "école",
			want: []Match{{Offset: sec(1), Type: "o", Line: "ÉCOLE ünïcode"}},
		},
		{
			name: "no match",
			evs:  session, text: "rm -rf",
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Search(record(t, tt.evs), tt.text, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("matches (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSearchLongLine(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 1000) + "NEEDLE" + strings.Repeat("b", 1000)
	got, err := Search(record(t, []ev{{1, "o", long + "\r\n"}}), "needle", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d matches, want 1", len(got))
	}
	line := got[0].Line
	if n := utf8.RuneCountInString(line); n != MaxMatchLine {
		t.Errorf("line has %d runes, want %d", n, MaxMatchLine)
	}
	if i := strings.Index(line, "NEEDLE"); i < 10 || i > MaxMatchLine-50 {
		t.Errorf("match at %d of the window, want context on both sides: %q", i, line)
	}
}

func TestSearchEndlessOutputWraps(t *testing.T) {
	t.Parallel()
	// Output with no newline at all is cut into bounded lines.
	chunk := strings.Repeat("x", 1000)
	var evs []ev
	for i := range 20 {
		evs = append(evs, ev{float64(i), "o", chunk})
	}
	evs = append(evs, ev{21, "o", "tail-marker"})
	got, err := Search(record(t, evs), "tail-marker", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || utf8.RuneCountInString(got[0].Line) > MaxMatchLine {
		t.Errorf("got %+v", got)
	}
}

func TestSearchErrors(t *testing.T) {
	t.Parallel()
	if _, err := Search(record(t, session), "", 0); err == nil {
		t.Error("empty text accepted")
	}
	r, err := NewReader(strings.NewReader(hdr + "[1, \"o\", \"found\\n\"]\n[0, \"o\", \"x\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Search(r, "found", 0)
	if err == nil {
		t.Fatal("bad recording searched without error")
	}
	if len(got) != 1 {
		t.Errorf("matches before the error = %+v, want them returned", got)
	}
}
