package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

// Each static file's compressed form, made at its first request, is the
// file; a second request gets the same bytes without compressing again.
func TestGzippedAssetsAreTheFiles(t *testing.T) {
	if len(gzipped) == 0 {
		t.Fatal("no static files")
	}
	for name, z := range gzipped {
		want, err := files.ReadFile("static/" + name)
		if err != nil {
			t.Fatal(err)
		}
		first := z()
		zr, err := gzip.NewReader(bytes.NewReader(first))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: decompressed to %d bytes (%v), want the file's %d", name, len(got), err, len(want))
		}
		if again := z(); len(again) == 0 || &again[0] != &first[0] {
			t.Fatalf("%s: compressed again on the second request", name)
		}
	}
}
