package web

import (
	"strings"
	"testing"
)

// TestCSVSafe: a cell a spreadsheet would read as a formula is quoted by a
// leading apostrophe; others are left as they are.
func TestCSVSafe(t *testing.T) {
	for in, want := range map[string]string{
		"=HYPERLINK(\"http://evil\")": "'=HYPERLINK(\"http://evil\")",
		"+1+1":                        "'+1+1",
		"-2+3":                        "'-2+3",
		"@SUM(A1)":                    "'@SUM(A1)",
		"\t=1":                        "'\t=1",
		"\r=1":                        "'\r=1",
		"alice":                       "alice",
		"":                            "",
		"a=b":                         "a=b",
	} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDiffLines: the diff keeps common lines and marks the others.
func TestDiffLines(t *testing.T) {
	var b strings.Builder
	for _, l := range diffLines("a\nb\nc\n", "a\nx\nc\nd\n") {
		b.WriteString(l.Op + l.Text + "|")
	}
	if got, want := b.String(), " a|-b|+x| c|+d|"; got != want {
		t.Fatalf("diff = %q, want %q", got, want)
	}
	if d := diffLines("", "new\n"); len(d) != 1 || d[0].Op != "+" {
		t.Fatalf("diff of a new text = %+v", d)
	}
}

// TestLinesAround: a validation error's line is shown with its
// neighbours, and marked.
func TestLinesAround(t *testing.T) {
	text := "1\n2\n3\n4\n5\n6\n7\n8\n9\n"
	ls := linesAround(text, `line 5: unknown field "logns" in allow`)
	if len(ls) != 7 || ls[0].N != 2 || !ls[3].Bad || ls[3].Text != "5" {
		t.Fatalf("lines = %+v", ls)
	}
	if ls := linesAround(text, "no line here"); ls != nil {
		t.Fatalf("lines for no line = %+v", ls)
	}
	if ls := linesAround(text, "line 99: x"); ls != nil {
		t.Fatalf("lines beyond the text = %+v", ls)
	}
}
