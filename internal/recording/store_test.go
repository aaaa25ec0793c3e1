package recording

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStoreAppendOrdering(t *testing.T) {
	type step struct {
		offset   int64
		data     string
		wantLen  int64
		wantHave int64 // >= 0: want *OffsetError with this Have
		wantErr  error
	}
	tests := []struct {
		name  string
		steps []step
		want  string
	}{
		{name: "in order", want: "abcdef", steps: []step{
			{0, "abc", 3, -1, nil}, {3, "def", 6, -1, nil}}},
		{name: "gap refused", want: "abc", steps: []step{
			{0, "abc", 3, -1, nil}, {5, "xyz", 0, 3, nil}}},
		{name: "first chunk not at zero", want: "", steps: []step{
			{4, "abc", 0, 0, nil}}},
		{name: "retried chunk idempotent", want: "abcdef", steps: []step{
			{0, "abc", 3, -1, nil}, {0, "abc", 3, -1, nil}, {3, "def", 6, -1, nil}, {3, "def", 6, -1, nil}, {1, "bcd", 6, -1, nil}}},
		{name: "retried chunk with other bytes", want: "abc", steps: []step{
			{0, "abc", 3, -1, nil}, {0, "abX", 0, -1, ErrMismatch}}},
		{name: "overlap past the end resumes", want: "abcdef", steps: []step{
			{0, "abc", 3, -1, nil}, {1, "bcdef", 0, 3, nil}, {3, "def", 6, -1, nil}}},
		{name: "empty chunk", want: "ab", steps: []step{
			{0, "ab", 2, -1, nil}, {2, "", 2, -1, nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t)
			m := testMeta("0123abcd")
			for i, s := range tc.steps {
				n, err := st.Append(m, "node-1", s.offset, []byte(s.data))
				var oe *OffsetError
				switch {
				case s.wantHave >= 0:
					if !errors.As(err, &oe) || oe.Have != s.wantHave {
						t.Fatalf("step %d: err %v, want OffsetError{Have: %d}", i, err, s.wantHave)
					}
				case s.wantErr != nil:
					if !errors.Is(err, s.wantErr) {
						t.Fatalf("step %d: err %v, want %v", i, err, s.wantErr)
					}
				case err != nil:
					t.Fatalf("step %d: %v", i, err)
				case n != s.wantLen:
					t.Fatalf("step %d: length %d, want %d", i, n, s.wantLen)
				}
			}
			if tc.want == "" {
				if _, err := st.Stat(m.SessionID); err == nil {
					// created but empty is fine only if nothing was accepted
					b, _ := stored(t, st, m.SessionID)
					if len(b) != 0 {
						t.Fatalf("stored %q, want nothing", b)
					}
				}
				return
			}
			b, info := stored(t, st, m.SessionID)
			if string(b) != tc.want || info.Length != int64(len(tc.want)) {
				t.Fatalf("stored %q (length %d), want %q", b, info.Length, tc.want)
			}
			// The hash auth keeps while appending matches the stored
			// bytes whatever was retried or refused on the way.
			if err := st.Complete(m.SessionID, "node-1", int64(len(tc.want)), sha([]byte(tc.want)), false); err != nil {
				t.Fatalf("complete: %v", err)
			}
		})
	}
}

func TestStoreOwnership(t *testing.T) {
	st := newStore(t)
	m := testMeta("abcdef01")
	m.NodeID = "node-2" // claimed; the authenticated node id wins
	if _, err := st.Append(m, "node-1", 0, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	info, err := st.Stat(m.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if info.NodeID != "node-1" || info.Meta.NodeID != "node-1" || info.User != "alice" {
		t.Fatalf("info %+v", info)
	}
	if _, err := st.Append(m, "node-2", 5, []byte("x")); !errors.Is(err, ErrNotOwner) {
		t.Errorf("append by another node: %v", err)
	}
	if _, err := st.Append(m, "node-2", 0, []byte("hello")); !errors.Is(err, ErrNotOwner) {
		t.Errorf("retry by another node: %v", err)
	}
	if err := st.Complete(m.SessionID, "node-2", 5, sha([]byte("hello")), false); !errors.Is(err, ErrNotOwner) {
		t.Errorf("complete by another node: %v", err)
	}
	if _, err := st.Append(m, "", 5, []byte("x")); err == nil {
		t.Error("append without node id accepted")
	}
}

func TestStoreRejectsBadNames(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	bad := []string{"", ".", "..", "../escape", "a/b", `a\b`, "/etc/passwd", "x\x00y", "-rf", "abc.json",
		"space id", "ünïcode", strings.Repeat("a", MaxSessionIDLen+1)}
	for _, id := range bad {
		m := testMeta(id)
		if _, err := st.Append(m, "node-1", 0, []byte("x")); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Append(%q): %v", id, err)
		}
		if err := st.Complete(id, "node-1", 1, sha([]byte("x")), false); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Complete(%q): %v", id, err)
		}
		if _, _, err := st.Open(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Open(%q): %v", id, err)
		}
		if _, err := st.Stat(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Stat(%q): %v", id, err)
		}
		if err := st.Delete(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Delete(%q): %v", id, err)
		}
	}
	if names := dirNames(t, dir); len(names) != 1 || names[0] != "store" {
		t.Errorf("files outside the store: %v", names)
	}
	if names := dirNames(t, filepath.Join(dir, "store")); len(names) != 1 || names[0] != lockDir {
		t.Errorf("files in the store: %v", names)
	}
	for _, id := range []string{"0", "deadbeef", "123e4567-e89b-12d3-a456-426614174000", strings.Repeat("f", MaxSessionIDLen)} {
		if !ValidSessionID(id) {
			t.Errorf("ValidSessionID(%q) = false", id)
		}
	}
}

func TestStoreChunkLimit(t *testing.T) {
	st := newStore(t)
	if _, err := st.Append(testMeta("aa"), "node-1", 0, make([]byte, MaxChunk+1)); !errors.Is(err, ErrChunkTooLarge) {
		t.Fatalf("oversized chunk: %v", err)
	}
	if _, err := st.Append(testMeta("aa"), "node-1", 0, make([]byte, MaxChunk)); err != nil {
		t.Fatalf("max chunk: %v", err)
	}
	if _, err := st.Append(testMeta("aa"), "node-1", -1, nil); err == nil {
		t.Fatal("negative offset accepted")
	}
}

func TestStoreComplete(t *testing.T) {
	st := newStore(t)
	id := "c0ffee"
	data := []byte("recording bytes")
	if _, err := st.Append(testMeta(id), "node-1", 0, data); err != nil {
		t.Fatal(err)
	}
	if err := st.Complete("beef", "node-1", 1, sha(nil), false); !errors.Is(err, ErrNotFound) {
		t.Errorf("complete unknown: %v", err)
	}
	if err := st.Complete(id, "node-1", int64(len(data))+1, sha(data), false); !errors.Is(err, ErrMismatch) {
		t.Errorf("wrong length: %v", err)
	}
	if err := st.Complete(id, "node-1", int64(len(data)), sha([]byte("other")), false); !errors.Is(err, ErrMismatch) {
		t.Errorf("wrong hash: %v", err)
	}
	if info, _ := st.Stat(id); info.Complete {
		t.Fatal("complete after mismatches")
	}
	if err := st.Complete(id, "node-1", int64(len(data)), strings.ToUpper(sha(data)), true); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if err := st.Complete(id, "node-1", int64(len(data)), sha(data), true); err != nil {
		t.Errorf("repeated complete: %v", err)
	}
	if err := st.Complete(id, "node-1", 3, sha(data[:3]), true); !errors.Is(err, ErrMismatch) {
		t.Errorf("complete again with other values: %v", err)
	}
	if _, err := st.Append(testMeta(id), "node-1", int64(len(data)), []byte("more")); !errors.Is(err, ErrCompleted) {
		t.Errorf("append after complete: %v", err)
	}
	if _, err := st.Append(testMeta(id), "node-1", 0, data); err != nil {
		t.Errorf("retried chunk after complete: %v", err)
	}
	info, err := st.Stat(id)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Complete || !info.Interrupted || info.SHA256 != sha(data) || info.Length != int64(len(data)) || info.Modified.IsZero() {
		t.Errorf("info %+v", info)
	}
}

// TestStoreTrusted: a recording appended by AppendTrusted (not hashed as
// it arrives), one that mixed in Append, and one resumed after a restart
// are all checked against their bytes when they complete.
func TestStoreTrusted(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("chunk one, chunk two")
	other := sha([]byte("chunk one, chunk TWO"))
	appendTwo := func(id string, first, second func(Meta, string, int64, []byte) (int64, error)) {
		t.Helper()
		if _, err := first(testMeta(id), "node-1", 0, data[:10]); err != nil {
			t.Fatal(err)
		}
		if _, err := second(testMeta(id), "node-1", 10, data[10:]); err != nil {
			t.Fatal(err)
		}
	}
	appendTwo("a1", st.AppendTrusted, st.AppendTrusted)
	for _, bad := range []string{"", "not hex", other[:62], other + "00"} {
		if err := st.Complete("a1", "node-1", int64(len(data)), bad, false); !errors.Is(err, ErrMismatch) {
			t.Errorf("trusted, hash %q: %v", bad, err)
		}
	}
	if err := st.Complete("a1", "node-1", int64(len(data)), other, false); !errors.Is(err, ErrMismatch) {
		t.Fatalf("trusted: wrong hash: %v", err)
	}
	if err := st.Complete("a1", "node-1", int64(len(data)), sha(data), false); err != nil {
		t.Fatalf("trusted: %v", err)
	}
	for id, appends := range map[string][2]func(Meta, string, int64, []byte) (int64, error){
		"a2": {st.Append, st.AppendTrusted},
		"a3": {st.AppendTrusted, st.Append},
	} {
		appendTwo(id, appends[0], appends[1])
		if err := st.Complete(id, "node-1", int64(len(data)), other, false); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s, mixed: wrong hash: %v", id, err)
		}
		if err := st.Complete(id, "node-1", int64(len(data)), sha(data), false); err != nil {
			t.Errorf("%s, mixed: %v", id, err)
		}
	}
	// Resumed after a restart: read back and checked.
	if _, err := st.AppendTrusted(testMeta("a4"), "node-1", 0, data[:10]); err != nil {
		t.Fatal(err)
	}
	if st, err = OpenStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendTrusted(testMeta("a4"), "node-1", 10, data[10:]); err != nil {
		t.Fatal(err)
	}
	if err := st.Complete("a4", "node-1", int64(len(data)), other, false); !errors.Is(err, ErrMismatch) {
		t.Errorf("resumed: wrong hash: %v", err)
	}
	if err := st.Complete("a4", "node-1", int64(len(data)), sha(data), false); err != nil {
		t.Errorf("resumed: %v", err)
	}
}

// TestStoreTornWrite: bytes past the recorded length (a write cut short by
// a crash before the state was updated) are overwritten and never served.
func TestStoreTornWrite(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := "7e57"
	if _, err := st.Append(testMeta(id), "node-1", 0, []byte("good ")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, id+".cast"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("GARBAGE-FROM-A-TORN-WRITE")
	f.Close()
	os.WriteFile(filepath.Join(dir, id+".json.tmp"), []byte("{"), 0o600)
	// Left by a crash a while ago (a fresh one may be another auth
	// process's, sharing the directory, being written right now).
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, id+".json.tmp"), old, old)

	st, err = OpenStore(dir) // restart
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := stored(t, st, id); string(b) != "good " {
		t.Fatalf("served %q", b)
	}
	if _, err := st.Append(testMeta(id), "node-1", 5, []byte("data")); err != nil {
		t.Fatal(err)
	}
	want := []byte("good data")
	if err := st.Complete(id, "node-1", int64(len(want)), sha(want), false); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, id+".cast"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, want) {
		t.Fatalf("file %q, want %q", raw, want)
	}
	if _, err := os.Stat(filepath.Join(dir, id+".json.tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary state file survived: %v", err)
	}
}

func TestStoreListDelete(t *testing.T) {
	st := newStore(t)
	for i, id := range []string{"bb", "aa", "cc"} {
		m := testMeta(id)
		m.Start = m.Start.Add(-time.Duration(i) * time.Minute)
		if _, err := st.Append(m, "node-1", 0, []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	list, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range list {
		ids = append(ids, in.SessionID)
	}
	if strings.Join(ids, ",") != "cc,aa,bb" {
		t.Fatalf("List order %v", ids)
	}
	if err := st.Delete("aa"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete("aa"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, _, err := st.Open("aa"); !errors.Is(err, ErrNotFound) {
		t.Errorf("open deleted: %v", err)
	}
	if list, _ := st.List(); len(list) != 2 {
		t.Errorf("List after delete: %d", len(list))
	}
	// A deleted session id can be recorded again from scratch.
	if _, err := st.Append(testMeta("aa"), "node-9", 0, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, info := stored(t, st, "aa"); string(b) != "new" || info.NodeID != "node-9" {
		t.Errorf("re-created: %q %+v", b, info)
	}
}

// FuzzStoreAppend checks Append against a model: the stored bytes are
// always the longest prefix accepted in order, whatever the sequence of
// offsets and chunks (including retries and overlaps).
func FuzzStoreAppend(f *testing.F) {
	f.Add([]byte{0, 3, 3, 3, 0, 3, 1, 4})
	f.Add([]byte{5, 1, 0, 2, 2, 9})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 64 {
			return
		}
		st := newStore(t)
		src := []byte("The quick brown fox jumps over the lazy dog, 0123456789.")
		var model []byte
		for i := 0; i+1 < len(ops); i += 2 {
			off := int64(ops[i]) % int64(len(src)+2)
			n := int64(ops[i+1]) % 16
			var chunk []byte
			if off < int64(len(src)) {
				chunk = src[off:min(off+n, int64(len(src)))]
			}
			if ops[i+1]&0x80 != 0 && len(chunk) > 0 {
				chunk = append([]byte(nil), chunk...)
				chunk[0] ^= 1 // a chunk that disagrees with the stream
			}
			got, err := st.Append(testMeta("f022"), "node-1", off, chunk)
			have := int64(len(model))
			end := off + int64(len(chunk))
			var oe *OffsetError
			switch {
			case off == have && !(off < have):
				if err != nil {
					t.Fatalf("append at end: %v", err)
				}
				model = append(model, chunk...)
				if got != int64(len(model)) {
					t.Fatalf("length %d, model %d", got, len(model))
				}
			case off < have && end <= have:
				if bytes.Equal(model[off:end], chunk) != (err == nil) {
					t.Fatalf("retry at %d (%q vs %q): %v", off, chunk, model[off:end], err)
				}
				if err != nil && !errors.Is(err, ErrMismatch) {
					t.Fatalf("retry error %v", err)
				}
			default:
				if !errors.As(err, &oe) || oe.Have != have {
					t.Fatalf("append at %d with %d stored: %v", off, have, err)
				}
			}
		}
		if len(model) == 0 {
			return
		}
		b, _ := stored(t, st, "f022")
		if !bytes.Equal(b, model) {
			t.Fatalf("stored %q, model %q", b, model)
		}
	})
}

func TestAckRecord(t *testing.T) {
	for _, n := range []int64{0, 1, 4096, 1 << 40} {
		if got := decodeAck(encodeAck(n)); got != n {
			t.Errorf("decodeAck(encodeAck(%d)) = %d", n, got)
		}
	}
	good := encodeAck(123456)
	for i := range good {
		torn := append([]byte(nil), good...)
		torn[i] ^= 0x40
		if got := decodeAck(torn); got != 0 {
			t.Errorf("record with byte %d flipped decodes to %d", i, got)
		}
	}
	for _, b := range [][]byte{nil, good[:15], append(good, 0)} {
		if got := decodeAck(b); got != 0 {
			t.Errorf("decodeAck(%d bytes) = %d", len(b), got)
		}
	}
}
