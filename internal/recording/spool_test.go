package recording

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
)

// writeSession records a scripted session and returns the output and
// input it contains.
func writeSession(t testing.TB, r *SpoolRecording, lines int) (out, in string) {
	t.Helper()
	var o, i strings.Builder
	for n := range lines {
		s := fmt.Sprintf("line %04d: héllo \"wörld\" \x1b[1mbold\x1b[0m ✓\r\n", n)
		b := []byte(s)
		// Split inside a multi-byte character to exercise UTF-8 joining.
		cut := strings.Index(s, "é") + 1
		if err := r.Output(b[:cut]); err != nil {
			t.Fatal(err)
		}
		if err := r.Output(b[cut:]); err != nil {
			t.Fatal(err)
		}
		o.WriteString(s)
		if n%50 == 0 {
			typed := fmt.Sprintf("ls %d\r", n)
			if err := r.Input([]byte(typed)); err != nil {
				t.Fatal(err)
			}
			i.WriteString(typed)
			if err := r.Resize(80+n%7, 24+n%5); err != nil {
				t.Fatal(err)
			}
		}
	}
	return o.String(), i.String()
}

func TestSpoolUploadsByteForByte(t *testing.T) {
	for _, recordInput := range []bool{true, false} {
		t.Run(fmt.Sprintf("input=%v", recordInput), func(t *testing.T) {
			st := newStore(t)
			up := &directUploader{store: st, nodeID: "node-1"}
			dir := t.TempDir()
			sp := newSpool(t, dir, up)
			id := "0123456789abcdef0123456789abcdef"
			r, err := sp.Start(testMeta(id), testHeader(), recordInput)
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(filepath.Join(dir, id+".cast")); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("spool file: %v %v", fi, err)
			}
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("spool dir: %v %v", fi, err)
			}
			wantOut, wantIn := writeSession(t, r, 2000)
			length, sum, err := r.Close()
			if err != nil {
				t.Fatal(err)
			}
			if l2, s2, err2 := r.Close(); l2 != length || s2 != sum || err2 != nil {
				t.Errorf("second Close: %d %s %v", l2, s2, err2)
			}
			if err := r.Output([]byte("late")); err == nil {
				t.Error("Output after Close succeeded")
			}
			waitPending(t, sp, 0)

			b, info := stored(t, st, id)
			if int64(len(b)) != length || sha(b) != sum {
				t.Fatalf("stored %d bytes sha %s, recorded %d %s", len(b), sha(b), length, sum)
			}
			if !info.Complete || info.Interrupted || info.SHA256 != sum || info.User != "alice" || info.Node != "web1" {
				t.Errorf("info %+v", info)
			}
			out, in, resizes := events(t, b)
			if out != wantOut {
				t.Errorf("output differs: %d vs %d bytes", len(out), len(wantOut))
			}
			if recordInput && in != wantIn || !recordInput && in != "" {
				t.Errorf("input %q, want %q (record input %v)", in, wantIn, recordInput)
			}
			if len(resizes) != 40 || resizes[1] != "81x24" {
				t.Errorf("resizes %d: %v", len(resizes), resizes[:min(3, len(resizes))])
			}
			if up.calls.Load() < 10 {
				t.Errorf("only %d upload calls for %d bytes with 4 KiB chunks", up.calls.Load(), length)
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("spool not empty after upload: %v", names)
			}
		})
	}
}

// TestSpoolAuthDown: auth unreachable while the session runs and after it
// ended; the session is never slowed; when auth is back everything arrives.
func TestSpoolAuthDown(t *testing.T) {
	st := newStore(t)
	// Auth does not answer at all while the session records: the session
	// never waits for it (if it did, it would never end). Then it refuses
	// every call for a while.
	up := &directUploader{store: st, nodeID: "node-1", hang: make(chan struct{})}
	up.down.Store(true)
	dir := t.TempDir()
	sp := newSpool(t, dir, up)
	id := "a1b2c3d4"
	r, err := sp.Start(testMeta(id), testHeader(), true)
	if err != nil {
		t.Fatal(err)
	}
	wantOut, _ := writeSession(t, r, 5000)
	length, sum, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	calls := up.calls.Load()
	close(up.hang)
	for up.calls.Load() < calls+2 { // retries of refused calls
		if time.Now().After(patience.Deadline(t)) {
			t.Fatalf("no retries while down: %d calls", up.calls.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if sp.Pending() != 1 {
		t.Fatalf("Pending = %d while auth is down", sp.Pending())
	}
	if _, err := st.Stat(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("auth has the recording while down: %v", err)
	}
	up.down.Store(false)
	waitPending(t, sp, 0)
	b, info := stored(t, st, id)
	if int64(len(b)) != length || sha(b) != sum || !info.Complete {
		t.Fatalf("stored %d bytes sha %s complete %v; want %d %s", len(b), sha(b), info.Complete, length, sum)
	}
	if out, _, _ := events(t, b); out != wantOut {
		t.Error("output differs")
	}
}

// TestSpoolLostAck: auth stored a chunk but the reply was lost; the retry
// (and the larger chunk that follows as more data became durable) must not
// duplicate bytes.
func TestSpoolLostAck(t *testing.T) {
	for _, lose := range []int64{1, 2, 3, 5} {
		t.Run(fmt.Sprint("call", lose), func(t *testing.T) {
			st := newStore(t)
			up := &directUploader{store: st, nodeID: "node-1"}
			up.loseAckAt.Store(lose)
			sp := newSpool(t, t.TempDir(), up)
			id := "10570ac4"
			r, err := sp.Start(testMeta(id), testHeader(), false)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				writeSession(t, r, 20)
				if i%4 == 0 {
					time.Sleep(15 * time.Millisecond)
				}
			}
			length, sum, err := r.Close()
			if err != nil {
				t.Fatal(err)
			}
			waitPending(t, sp, 0)
			b, info := stored(t, st, id)
			if int64(len(b)) != length || sha(b) != sum || !info.Complete {
				t.Fatalf("stored %d bytes sha %s; want %d %s", len(b), sha(b), length, sum)
			}
			events(t, b) // parses: no duplicated or torn lines
		})
	}
}

// TestSpoolOffsetResume: auth lost the recording mid-upload (say, restored
// from a backup); its OffsetError makes the spool send everything again.
func TestSpoolOffsetResume(t *testing.T) {
	st := newStore(t)
	up := &directUploader{store: st, nodeID: "node-1"}
	id := "0ff5e7"
	up.before = func(call int64, meta Meta, offset int64) {
		if call == 3 {
			if err := st.Delete(meta.SessionID); err != nil {
				t.Errorf("delete: %v", err)
			}
		}
	}
	sp := newSpool(t, t.TempDir(), up)
	r, err := sp.Start(testMeta(id), testHeader(), false)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		writeSession(t, r, 40)
		time.Sleep(15 * time.Millisecond)
	}
	length, sum, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	waitPending(t, sp, 0)
	if up.offsetErr.Load() == 0 {
		t.Error("no OffsetError was returned: the test did not exercise resume")
	}
	b, _ := stored(t, st, id)
	if int64(len(b)) != length || sha(b) != sum {
		t.Fatalf("stored %d bytes sha %s; want %d %s", len(b), sha(b), length, sum)
	}
}

// TestSpoolCompleteNotFound: auth lost a fully uploaded recording before
// Complete: the spool uploads it again.
func TestSpoolCompleteNotFound(t *testing.T) {
	st := newStore(t)
	up := &directUploader{store: st, nodeID: "node-1"}
	sp := newSpool(t, t.TempDir(), up)
	id := "c0de"
	r, err := sp.Start(testMeta(id), testHeader(), false)
	if err != nil {
		t.Fatal(err)
	}
	writeSession(t, r, 10)
	if err := r.Sync(); err != nil {
		t.Fatal(err)
	}
	deadline := patience.Deadline(t)
	for {
		if info, err := st.Stat(id); err == nil && info.Length > 0 && up.okCalls.Load() > 0 && sp.uploaded(id) == info.Length {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first part never uploaded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := st.Delete(id); err != nil {
		t.Fatal(err)
	}
	length, sum, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	waitPending(t, sp, 0)
	b, _ := stored(t, st, id)
	if int64(len(b)) != length || sha(b) != sum {
		t.Fatalf("stored %d bytes sha %s; want %d %s", len(b), sha(b), length, sum)
	}
}

// TestSpoolRestart: a closed recording whose upload did not finish before
// the spool stopped is completed (not interrupted) by the next OpenSpool; an
// open one is completed as interrupted.
func TestSpoolRestart(t *testing.T) {
	st := newStore(t)
	up := &directUploader{store: st, nodeID: "node-1"}
	up.down.Store(true)
	dir := t.TempDir()
	sp := newSpool(t, dir, up)
	done, err := sp.Start(testMeta("d0e"), testHeader(), false)
	if err != nil {
		t.Fatal(err)
	}
	doneOut, _ := writeSession(t, done, 30)
	dl, dsum, err := done.Close()
	if err != nil {
		t.Fatal(err)
	}
	open, err := sp.Start(testMeta("09e2"), testHeader(), false)
	if err != nil {
		t.Fatal(err)
	}
	openOut, _ := writeSession(t, open, 30)
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := open.Output([]byte("after spool close")); !errors.Is(err, ErrClosed) {
		t.Errorf("Output after spool Close: %v", err)
	}
	if _, _, err := open.Close(); err == nil {
		t.Error("recording Close after spool Close succeeded")
	}
	if _, err := sp.Start(testMeta("aaaa"), testHeader(), false); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}

	up.down.Store(false)
	sp2 := newSpool(t, dir, up)
	waitPending(t, sp2, 0)
	b, info := stored(t, st, "d0e")
	if int64(len(b)) != dl || sha(b) != dsum || !info.Complete || info.Interrupted {
		t.Fatalf("closed recording: %d bytes, info %+v", len(b), info)
	}
	if out, _, _ := events(t, b); out != doneOut {
		t.Error("closed recording output differs")
	}
	b, info = stored(t, st, "09e2")
	if !info.Complete || !info.Interrupted || sha(b) != info.SHA256 {
		t.Fatalf("open recording: info %+v", info)
	}
	if out, _, _ := events(t, b); out != openOut {
		t.Errorf("open recording output differs: %d vs %d bytes", len(out), len(openOut))
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("spool not empty: %v", names)
	}
}

// TestSpoolSalvageTornLine: a recording cut mid-line (the node died inside
// a write) is completed up to its last full line, so it stays readable.
func TestSpoolSalvageTornLine(t *testing.T) {
	dir := t.TempDir()
	id := "7047"
	full := "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.5, \"o\", \"hello\"]\n"
	torn := "[0.7, \"o\", \"wor"
	state := fmt.Sprintf(`{"meta":{"session_id":%q,"user":"alice"},"uploaded":0,"closed":false}`, id)
	if err := os.WriteFile(filepath.Join(dir, id+".json"), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".cast"), []byte(full+torn), 0o600); err != nil {
		t.Fatal(err)
	}
	// Leftovers that OpenSpool must clean up or ignore.
	os.WriteFile(filepath.Join(dir, "5ca1.json"), []byte(`{"meta":{"session_id":"5ca1"}}`), 0o600) // no data file
	os.WriteFile(filepath.Join(dir, id+".json.tmp"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte("not json"), 0o600)

	st := newStore(t)
	sp := newSpool(t, dir, &directUploader{store: st, nodeID: "node-1"})
	waitPending(t, sp, 0)
	b, info := stored(t, st, id)
	if string(b) != full || !info.Interrupted || !info.Complete || info.User != "alice" {
		t.Fatalf("stored %q, info %+v", b, info)
	}
	names := dirNames(t, dir)
	if len(names) != 1 || names[0] != "bad.json" {
		t.Errorf("spool holds %v, want only the undecodable bad.json", names)
	}
}

func TestSpoolPermanentError(t *testing.T) {
	st := newStore(t)
	id := "0a1e"
	if _, err := st.Append(testMeta(id), "node-other", 0, []byte("x")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	up := &directUploader{store: st, nodeID: "node-1"}
	sp := newSpool(t, dir, up)
	r, err := sp.Start(testMeta(id), testHeader(), false)
	if err != nil {
		t.Fatal(err)
	}
	writeSession(t, r, 3)
	if _, _, err := r.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := up.calls.Load(); n != 1 {
		t.Errorf("%d upload calls after ErrNotOwner, want 1 (no retries)", n)
	}
	if names := dirNames(t, dir); len(names) != 2 {
		t.Errorf("spool files %v, want the recording kept", names)
	}
}

func TestSpoolStartErrors(t *testing.T) {
	sp := newSpool(t, t.TempDir(), &directUploader{store: newStore(t), nodeID: "n"})
	if _, err := sp.Start(testMeta("../x"), testHeader(), false); !errors.Is(err, ErrInvalidID) {
		t.Errorf("traversal id: %v", err)
	}
	if _, err := sp.Start(testMeta("abc"), testHeader(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Start(testMeta("abc"), testHeader(), false); err == nil {
		t.Error("duplicate session id accepted")
	}
	bad := testHeader()
	bad.Width = 0
	if _, err := sp.Start(testMeta("abd"), bad, false); err == nil {
		t.Error("invalid header accepted")
	}
	if _, err := os.Stat(filepath.Join(sp.cfg.Dir, "abd.cast")); !os.IsNotExist(err) {
		t.Errorf("failed Start left a file: %v", err)
	}
	if sp.Pending() != 1 {
		t.Errorf("Pending = %d", sp.Pending())
	}
}

// A node that died before its recording's header reached the disk leaves an
// empty data file: there is nothing to upload, and the spool must neither
// retry completing it forever nor keep its files.
func TestEmptyInterruptedRecordingIsDropped(t *testing.T) {
	dir := t.TempDir()
	const id = "e0e0e0e0"
	st, err := json.Marshal(spoolState{Meta: testMeta(id)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".json"), st, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".cast"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	up := &directUploader{store: store, nodeID: "node-1"}
	sp, err := OpenSpool(context.Background(), SpoolConfig{Dir: dir, Uploader: up, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	deadline := patience.Deadline(t)
	for sp.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the empty recording is still pending (%d calls to auth)", up.calls.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, id+".*")); len(left) != 0 {
		t.Fatalf("spool files left: %v", left)
	}
}
