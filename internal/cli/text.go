package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// Every text view of the CLI (tables, status, messages, errors) shows
// values that others control: node labels a --label-cmd made, the reason
// of an access request, a command in the audit log, a cluster's name. A
// value with terminal control sequences could retitle, clear or overwrite
// the screen of the admin who looks at it. So text views write values only
// through textf and writeTable, which pass them through escapeText; JSON
// and YAML output stays exact.

// escapeText returns s with everything a terminal could act on written as
// a visible Go-style escape: C0 controls and DEL (\x1b, \r, \t...), C1
// controls (\u009b, the one-character CSI), bytes that are not UTF-8
// (\x9b), and the invisible characters that reorder or hide text (bidi
// overrides and isolates, zero-width characters, line and paragraph
// separators: every character that is not graphic). Printable text, UTF-8
// included, is kept as it is. With keepNewlines, '\n' stays a line break
// (messages of several lines).
func escapeText(s string, keepNewlines bool) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' && keepNewlines:
			b.WriteByte('\n')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x80 || unicode.IsGraphic(r):
			b.WriteString(s[i : i+size])
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += size
	}
	return b.String()
}

// escaped formats a value as its own verb would, then escapes the result.
type escaped struct{ v any }

func (e escaped) Format(f fmt.State, verb rune) {
	io.WriteString(f, escapeText(fmt.Sprintf(fmt.FormatString(f, verb), e.v), false))
}

// textf is fmt.Fprintf for text views: the format is ours and is written
// as it is; every argument is escaped (escapeText) after formatting.
func textf(w io.Writer, format string, args ...any) {
	for i, a := range args {
		args[i] = escaped{a}
	}
	fmt.Fprintf(w, format, args...)
}

// writeTable writes a header and rows as aligned columns; every cell is
// escaped (a tab or newline in a value cannot shift columns or forge rows).
func writeTable(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	io.WriteString(tw, header+"\n")
	for _, row := range rows {
		for i, cell := range row {
			if i > 0 {
				io.WriteString(tw, "\t")
			}
			io.WriteString(tw, escapeText(cell, false))
		}
		io.WriteString(tw, "\n")
	}
	return tw.Flush()
}

// humanDuration writes d as people say it: 25s, 4m30s, 2h, 1h30m (whole
// minutes from an hour up); a positive d under a second is "<1s".
func humanDuration(d time.Duration) string {
	if d < 0 {
		return "-" + humanDuration(-d)
	}
	if d > 0 && d < time.Second {
		return "<1s"
	}
	if d >= time.Hour {
		d = d.Round(time.Minute)
	} else {
		d = d.Round(time.Second)
	}
	h, m, s := d/time.Hour, d%time.Hour/time.Minute, d%time.Minute/time.Second
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 || b.Len() == 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}
