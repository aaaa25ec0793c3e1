//go:build integration

package sshclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// treeEntry is one file or directory of a test tree, relative to its root.
type treeEntry struct {
	Mode fs.FileMode
	Data string // file contents
	Dir  bool
}

// readTree describes every entry under root.
func readTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	got := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := treeEntry{Mode: info.Mode().Perm(), Dir: d.IsDir()}
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Data = string(b)
		}
		got[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func writeFile(t *testing.T, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile is subject to umask
		t.Fatal(err)
	}
}

// The "remote" side is the same machine (sshd runs locally), so remote paths
// are temp dirs the test can inspect directly.
func TestUploadDownloadRoundTrip(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	client := c.dial(t)
	ctx := context.Background()

	local, remote, back := t.TempDir(), t.TempDir(), t.TempDir()
	big := make([]byte, 2<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(local, "big.bin"), big, 0o640)
	tree := filepath.Join(local, "tree")
	writeFile(t, filepath.Join(tree, "a.txt"), []byte("alpha\n"), 0o644)
	writeFile(t, filepath.Join(tree, "sub", "b.sh"), []byte("#!/bin/sh\necho b\n"), 0o755)
	writeFile(t, filepath.Join(tree, "sub", "deeper", "c"), []byte{}, 0o600)
	if err := os.Mkdir(filepath.Join(tree, "empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(tree, "sub"), 0o711); err != nil {
		t.Fatal(err)
	}

	var progress bytes.Buffer
	// Two sources into an existing directory.
	err := Upload(ctx, client, []string{filepath.Join(local, "big.bin"), tree}, remote,
		CopyOptions{Recursive: true, Progress: &progress})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if diff := cmp.Diff(readTree(t, local), readTree(t, remote)); diff != "" {
		t.Errorf("remote tree differs from local (-local +remote):\n%s", diff)
	}
	if !strings.Contains(progress.String(), "big.bin  2.0 MiB") {
		t.Errorf("progress output %q lacks a line for big.bin", progress.String())
	}

	if err := Download(ctx, client, []string{filepath.Join(remote, "big.bin"), filepath.Join(remote, "tree")}, back,
		CopyOptions{Recursive: true, Quiet: true, Progress: &progress}); err != nil {
		t.Fatalf("Download: %v", err)
	}
	if diff := cmp.Diff(readTree(t, local), readTree(t, back)); diff != "" {
		t.Errorf("downloaded tree differs from local (-local +downloaded):\n%s", diff)
	}
	got, err := os.ReadFile(filepath.Join(back, "big.bin"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("downloaded big.bin is not byte-exact (err %v, %d bytes)", err, len(got))
	}

	// A single file to a new name, and a directory to a new name (scp -r
	// dir host:new creates new with dir's contents).
	if err := Upload(ctx, client, []string{filepath.Join(tree, "a.txt")}, filepath.Join(remote, "renamed.txt"), CopyOptions{}); err != nil {
		t.Fatalf("Upload to a new name: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(remote, "renamed.txt")); err != nil || string(b) != "alpha\n" {
		t.Errorf("renamed.txt = %q, %v", b, err)
	}
	if err := Upload(ctx, client, []string{tree}, filepath.Join(remote, "copy"), CopyOptions{Recursive: true}); err != nil {
		t.Fatalf("Upload dir to a new name: %v", err)
	}
	if diff := cmp.Diff(readTree(t, tree), readTree(t, filepath.Join(remote, "copy"))); diff != "" {
		t.Errorf("copied dir differs (-local +remote):\n%s", diff)
	}
	dl := filepath.Join(back, "dl-copy")
	if err := Download(ctx, client, []string{filepath.Join(remote, "copy")}, dl, CopyOptions{Recursive: true}); err != nil {
		t.Fatalf("Download dir to a new name: %v", err)
	}
	if diff := cmp.Diff(readTree(t, tree), readTree(t, dl)); diff != "" {
		t.Errorf("downloaded dir differs (-local +downloaded):\n%s", diff)
	}
	if progress.Len() == 0 {
		t.Error("no progress output")
	}
}

func TestCopyErrors(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	client := c.dial(t)
	ctx := context.Background()
	local, remote := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(local, "f"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(local, "d", "g"), []byte("y"), 0o644)
	writeFile(t, filepath.Join(remote, "rf"), []byte("z"), 0o644)

	tests := []struct {
		name string
		do   func() error
		want []string // substrings of the error
	}{
		{"upload dir without -r", func() error {
			return Upload(ctx, client, []string{filepath.Join(local, "d")}, remote, CopyOptions{})
		}, []string{"d: is a directory (copy directories with -r)"}},
		{"upload missing file, others still copied", func() error {
			return Upload(ctx, client, []string{filepath.Join(local, "nope"), filepath.Join(local, "f")}, remote, CopyOptions{})
		}, []string{"nope: no such file or directory"}},
		{"several sources to a non-directory", func() error {
			return Upload(ctx, client, []string{filepath.Join(local, "f"), filepath.Join(local, "f")}, filepath.Join(remote, "rf"), CopyOptions{})
		}, []string{"is not a directory"}},
		{"download missing remote file", func() error {
			return Download(ctx, client, []string{filepath.Join(remote, "nope")}, local, CopyOptions{})
		}, []string{"remote " + filepath.Join(remote, "nope")}},
		{"download dir without -r", func() error {
			return Download(ctx, client, []string{remote}, t.TempDir(), CopyOptions{})
		}, []string{"is a directory (copy directories with -r)"}},
		{"no sources", func() error {
			return Upload(ctx, client, nil, remote, CopyOptions{})
		}, []string{"no files given"}},
		{"cancelled", func() error {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return Download(ctx, client, []string{filepath.Join(remote, "rf")}, t.TempDir(), CopyOptions{})
		}, []string{"context canceled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(remote, "f")); err != nil {
		t.Errorf("f was not uploaded next to the missing file: %v", err)
	}
}

func TestRemoteRel(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"": ".", "~": ".", "~/": ".", "~//x": "x", "~/a/b": "a/b", "/abs": "/abs", "rel": "rel", "~user/x": "~user/x",
	}
	for in, want := range tests {
		if got := remoteRel(in); got != want {
			t.Errorf("remoteRel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSafeName(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"a": true, ".hidden": true, "x y": true, "": false, ".": false, "..": false, "a/b": false, "../x": false, "nul\x00": false,
	}
	for in, want := range tests {
		if got := safeName(in); got != want {
			t.Errorf("safeName(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	t.Parallel()
	tests := map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 2 << 20: "2.0 MiB", 3 << 30: "3.0 GiB"}
	for in, want := range tests {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", in, got, want)
		}
	}
}
