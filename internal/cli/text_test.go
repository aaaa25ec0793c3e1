package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEscapeText(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "web-1 env=prod", "web-1 env=prod"},
		{"utf-8 kept", "café 東京 ünïcödé €", "café 東京 ünïcödé €"},
		{"backslash kept", `C:\dir`, `C:\dir`},
		{"title", "\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},
		{"clear screen", "\x1b[2J\x1b[H", `\x1b[2J\x1b[H`},
		{"carriage return overwrite", "ok\rFAILED", `ok\rFAILED`},
		{"tab and newline", "a\tb\nc", `a\tb\nc`},
		{"DEL", "a\x7fb", `a\x7fb`},
		{"C1 CSI as UTF-8", "\u009b31mred", `\u009b31mred`},
		{"raw C1 byte", "\x9b31mred", `\x9b31mred`},
		{"invalid UTF-8", "a\xff\xfeb", `a\xff\xfeb`},
		{"bidi override", "evil\u202egnp.exe", `evil\u202egnp.exe`},
		{"bidi isolate", "\u2066x\u2069", `\u2066x\u2069`},
		{"zero width", "ad\u200bmin", `ad\u200bmin`},
		{"byte order mark", "\ufeffx", `\ufeffx`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"tag characters", "a\U000e0041", `a\U000e0041`},
		{"NUL", "a\x00b", `a\x00b`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := escapeText(tt.in, false); got != tt.want {
				t.Errorf("escapeText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got := escapeText("line one\nline \x1b[2Jtwo", true); got != "line one\nline \\x1b[2Jtwo" {
		t.Errorf("keepNewlines: %q", got)
	}
}

func TestTextfEscapesArgumentsOnly(t *testing.T) {
	var b bytes.Buffer
	textf(&b, "%s\t%q %d %-6s|\n", "a\x1b[2J", "b\x1b", 42, "c\u202e")
	if want := "a\\x1b[2J\t\"b\\x1b\" 42 c\\u202e    |\n"; b.String() != want {
		t.Errorf("textf = %q, want %q", b.String(), want)
	}
	b.Reset()
	if err := writeTable(&b, "A\tB", [][]string{{"x\ty", "1\n2\x1b]0;t\x07"}}); err != nil {
		t.Fatal(err)
	}
	if want := "A     B\nx\\ty  1\\n2\\x1b]0;t\\x07\n"; b.String() != want {
		t.Errorf("writeTable = %q, want %q", b.String(), want)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		400 * time.Millisecond:                "<1s",
		25*time.Second + 300*time.Millisecond: "25s",
		90 * time.Second:                      "1m30s",
		2 * time.Hour:                         "2h",
		90*time.Minute + 20*time.Second:       "1h30m",
		168 * time.Hour:                       "168h",
		-5 * time.Second:                      "-5s",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestStatusUnderAMinute: with seconds left, status says how many, and
// says EXPIRED only once the certificates have expired.
func TestStatusUnderAMinute(t *testing.T) {
	for _, tt := range []struct {
		left time.Duration
		want string
	}{
		{25 * time.Second, "[valid for 2"},
		{50 * time.Second, "[valid for "},
		{-time.Second, "[EXPIRED: run warden login]"},
		{3*time.Hour + 30*time.Second, "[valid for 3h"},
	} {
		home := t.TempDir()
		p := map[string]any{"proxy": "127.0.0.1:3080", "cluster": "c", "user": "u", "expires": time.Now().Add(tt.left)}
		data, _ := json.Marshal(p)
		if err := os.WriteFile(filepath.Join(home, "profile.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		if code := RunIO(t.Context(), []string{"--home", home, "status"}, &IO{In: strings.NewReader(""), Out: &out, Err: &errb}); code != 0 {
			t.Fatalf("status: %d %s", code, errb.String())
		}
		if !strings.Contains(out.String(), tt.want) || tt.left > 0 && strings.Contains(out.String(), "EXPIRED") {
			t.Errorf("%s left: status says\n%s\nwant %q", tt.left, out.String(), tt.want)
		}
	}
}
