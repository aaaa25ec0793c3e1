package asciicast

import "testing"

func TestStripANSI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"plain", "hello world", "hello world"},
		{"sgr", "\x1b[1;31mred\x1b[0m", "red"},
		{"private csi", "\x1b[?2004h\x1b[?1049lok", "ok"},
		{"cursor", "a\x1b[10;20Hb\x1b[2Kc", "abc"},
		{"osc bel", "\x1b]0;title\a$ ", "$ "},
		{"osc st", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"},
		{"dcs", "\x1bPq#0;2;0;0;0\x1b\\after", "after"},
		{"charset", "\x1b(Bx\x1b)0y", "xy"},
		{"two-byte", "\x1b=\x1b>\x1b7\x1b8\x1bMz", "z"},
		{"c1 csi", "\u009b31mred", "red"},
		{"keeps controls", "a\r\nb\tc\bd", "a\r\nb\tc\bd"},
		{"bel dropped", "ding\a!", "ding!"},
		{"control inside csi executed", "\x1b[3\n1mx", "\nx"},
		{"unterminated", "abc\x1b[38;5", "abc"},
		{"unterminated osc", "abc\x1b]0;never ends", "abc"},
		{"can aborts", "\x1b[12\x18x", "x"},
		{"utf8", "\x1b[1mcafé 日本\x1b[0m", "café 日本"},
		{"esc esc", "\x1b\x1b[0mx", "x"},
	}
	for _, tt := range tests {
		if got := StripANSI(tt.in); got != tt.want {
			t.Errorf("%s: StripANSI(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestCSIParam(t *testing.T) {
	t.Parallel()
	tests := []struct {
		params string
		i, def int
		want   int
	}{
		{"", 0, 1, 1},
		{"5", 0, 1, 5},
		{"0", 0, 1, 1},
		{"12;34", 1, 1, 34},
		{"12;34", 2, 7, 7},
		{";34", 0, 1, 1},
		{"?25", 0, 1, 25},
		{"99999999999", 0, 1, 99999},
	}
	for _, tt := range tests {
		var p vtParser
		for _, r := range "\x1b[" + tt.params + "m" {
			p.step(r)
		}
		if got := p.csiParam(tt.i, tt.def); got != tt.want {
			t.Errorf("csiParam(%q, %d, %d) = %d, want %d", tt.params, tt.i, tt.def, got, tt.want)
		}
	}
}
