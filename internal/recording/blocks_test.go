package recording

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// blockList is the block hashes of data, computed the plain way.
func blockList(data []byte) []byte {
	var out []byte
	for off := 0; off < len(data); off += BlockSize {
		sum := sha256.Sum256(data[off:min(off+BlockSize, len(data))])
		out = append(out, sum[:]...)
	}
	return out
}

// TestStoreBlockHashes: Complete keeps the block hashes of every
// recording, whether it hashed the bytes as they came (Append), read them
// back (AppendTrusted) or after a restart, and names their root in the
// state.
func TestStoreBlockHashes(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3*BlockSize+1234)
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	want := blockList(data)
	upload := func(id string, appendFn func(Meta, string, int64, []byte) (int64, error), restartAt int) {
		t.Helper()
		for off := 0; off < len(data); off += 100_000 {
			if off >= restartAt {
				// Auth restarts: the node sends again from the durable length.
				if st, err = OpenStore(dir); err != nil {
					t.Fatal(err)
				}
				info, err := st.Stat(id)
				if err != nil {
					t.Fatal(err)
				}
				appendFn, restartAt, off = st.Append, len(data), int(info.Length)
			}
			if _, err := appendFn(testMeta(id), "node-1", int64(off), data[off:min(off+100_000, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Complete(id, "node-1", int64(len(data)), sha(data), false); err != nil {
			t.Fatal(err)
		}
	}
	upload("b1", st.Append, len(data))
	upload("b2", st.AppendTrusted, len(data))
	upload("b3", st.Append, 400_000)
	for _, id := range []string{"b1", "b2", "b3"} {
		info, err := st.Stat(id)
		if err != nil {
			t.Fatal(err)
		}
		list, err := st.BlockList(id, info.Length)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(list, want) || info.BlocksSHA256 != BlocksRoot(want) {
			t.Errorf("%s: %d block hashes, root %s; want %d, root %s", id, len(list)/32, info.BlocksSHA256, len(want)/32, BlocksRoot(want))
		}
	}
	if err := st.Delete("b1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b1.blocks")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deleted recording's block hashes: %v", err)
	}
}

// TestBlockCheckedReaderAt: reads anywhere return the recording's bytes;
// a changed byte fails the reads of its block only; a list that is not
// the recorded one, or not as long as the recording, is refused.
func TestBlockCheckedReaderAt(t *testing.T) {
	data := bytes.Repeat([]byte("[1.5,\"o\",\"some output\"]\n"), 3*BlockSize/24)
	list := blockList(data)
	root := BlocksRoot(list)
	r, err := NewBlockCheckedReaderAt(bytes.NewReader(data), "s1", int64(len(data)), list, root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(r, 0, int64(len(data))))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole read: %d bytes, %v", len(got), err)
	}
	p := make([]byte, 5000)
	if n, err := r.ReadAt(p, BlockSize-2500); err != nil || !bytes.Equal(p[:n], data[BlockSize-2500:BlockSize+2500]) {
		t.Fatalf("read across a block boundary: %d, %v", n, err)
	}
	if n, err := r.ReadAt(p, int64(len(data))-10); n != 10 || err != io.EOF {
		t.Fatalf("read past the end: %d, %v", n, err)
	}

	altered := bytes.Clone(data)
	altered[BlockSize+77] ^= 1
	r, err = NewBlockCheckedReaderAt(bytes.NewReader(altered), "s1", int64(len(data)), list, root)
	if err != nil {
		t.Fatal(err)
	}
	var ae *AlteredError
	if _, err := r.ReadAt(p, BlockSize+1000); !errors.As(err, &ae) {
		t.Fatalf("read of the altered block: %v", err)
	}
	for _, off := range []int64{0, 2 * BlockSize} {
		if _, err := r.ReadAt(p, off); err != nil {
			t.Errorf("read of an intact block at %d: %v", off, err)
		}
	}
	if _, err := NewBlockCheckedReaderAt(bytes.NewReader(data), "s1", int64(len(data)), blockList(altered), root); !errors.As(err, &ae) {
		t.Errorf("a block list with another root: %v", err)
	}
	short := list[:len(list)-32]
	if _, err := NewBlockCheckedReaderAt(bytes.NewReader(data), "s1", int64(len(data)), short, BlocksRoot(short)); !errors.As(err, &ae) {
		t.Errorf("a block list too short for the length: %v", err)
	}
	// A stored file shorter than recorded.
	r, _ = NewBlockCheckedReaderAt(bytes.NewReader(data[:BlockSize]), "s1", int64(len(data)), list, root)
	if _, err := r.ReadAt(p, BlockSize+10); !errors.As(err, &ae) {
		t.Errorf("read of a truncated recording: %v", err)
	}
}

// BenchmarkBlockCheckedRange: a 256 KiB range read (the web player's
// CHUNK) at a block-unaligned offset, checked, against the same read
// unchecked.
func BenchmarkBlockCheckedRange(b *testing.B) {
	data := bytes.Repeat([]byte("[1.5,\"o\",\"some output\"]\n"), 64<<20/24)
	list := blockList(data)
	p := make([]byte, 256<<10)
	for _, mode := range []string{"unchecked", "checked"} {
		b.Run(mode, func(b *testing.B) {
			var ra io.ReaderAt = bytes.NewReader(data)
			if mode == "checked" {
				r, err := NewBlockCheckedReaderAt(ra, "s1", int64(len(data)), list, BlocksRoot(list))
				if err != nil {
					b.Fatal(err)
				}
				ra = r
			}
			b.SetBytes(int64(len(p)))
			i := int64(0)
			for b.Loop() {
				off := (i*7919*BlockSize + 1000) % (int64(len(data)) - int64(len(p)))
				i++
				// 32 KiB at a time, as http.ServeContent reads.
				for k := 0; k < len(p); k += 32 << 10 {
					if _, err := ra.ReadAt(p[k:k+32<<10], off+int64(k)); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
