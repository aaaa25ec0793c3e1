package recording

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/warden-sh/warden/internal/patience"
	"golang.org/x/sys/unix"
)

// residentPages returns how many of the file's pages are in the page cache,
// and how many pages it has.
func residentPages(t *testing.T, path string) (resident, total int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		t.Fatalf("stat %s: %v (size %d)", path, err, st.Size())
	}
	// Mapping a file does not read it: mincore reports what the kernel
	// already caches.
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal("mincore:", e)
	}
	for _, v := range vec {
		resident += int(v & 1)
	}
	return resident, len(vec)
}

// requireCachingFS makes the test meaningful: tmpfs has no page cache to
// leave (its pages are the file).
func requireCachingFS(t *testing.T, dir string) {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Skipf("%s is on tmpfs, which keeps file data in memory by design", dir)
	}
}

// TestRecordingsLeaveThePageCache: a recording's bytes, once durable where
// they go next, are dropped from the page cache, on auth (the store) and on
// the node (the spool, once uploaded). Recordings are written once and read
// rarely; cached they would crowd out auth's database and, on a VM, cost a
// fresh page of guest memory for every recorded byte.
func TestRecordingsLeaveThePageCache(t *testing.T) {
	t.Run("store", func(t *testing.T) {
		dir := t.TempDir()
		requireCachingFS(t, dir)
		st, err := OpenStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		id := "cace"
		chunk := bytes.Repeat([]byte("drwxr-xr-x 2 alice staff 4096 Nov 22 05:31 dir\r\n"), MaxChunk/48)
		var all []byte
		for range 20 { // more than two persistBytes
			if _, err := st.Append(testMeta(id), "node-1", int64(len(all)), chunk); err != nil {
				t.Fatal(err)
			}
			all = append(all, chunk...)
		}
		if err := st.Complete(id, "node-1", int64(len(all)), sha(all), false); err != nil {
			t.Fatal(err)
		}
		if res, total := residentPages(t, filepath.Join(dir, id+".cast")); res > total/20 {
			t.Errorf("%d of the recording's %d pages still cached after Complete", res, total)
		}
		if b, _ := stored(t, st, id); !bytes.Equal(b, all) {
			t.Fatal("stored bytes differ")
		}
	})
	t.Run("spool", func(t *testing.T) {
		st := newStore(t)
		// Auth takes every chunk but is unreachable for Complete, so the
		// uploaded spool file stays for inspection.
		up := &holdComplete{directUploader{store: st, nodeID: "node-1"}}
		dir := t.TempDir()
		requireCachingFS(t, dir)
		sp := newSpool(t, dir, up, func(c *SpoolConfig) { c.ChunkSize = MaxChunk })
		id := "5ba11"
		r, err := sp.Start(testMeta(id), testHeader(), false)
		if err != nil {
			t.Fatal(err)
		}
		line := bytes.Repeat([]byte("0123456789abcdef"), 2048)
		for range 512 { // 16 MiB
			if err := r.Output(line); err != nil {
				t.Fatal(err)
			}
		}
		length, _, err := r.Close()
		if err != nil {
			t.Fatal(err)
		}
		deadline := patience.Deadline(t)
		for {
			info, err := st.Stat(id)
			if err == nil && info.Length == length {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("auth has %+v (%v), want %d bytes", info, err, length)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The uploader drops a chunk's pages just after auth took it.
		for {
			res, total := residentPages(t, filepath.Join(dir, id+".cast"))
			if res <= total/20 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of the uploaded spool file's %d pages still cached", res, total)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

type holdComplete struct{ directUploader }

func (h *holdComplete) Complete(context.Context, Meta, int64, string, bool) error {
	return errUnreachable
}

// threadNice reads a thread's nice value from /proc.
func threadNice(t *testing.T, tid int) int {
	t.Helper()
	n, err := readThreadNice(tid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readThreadNice(tid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which ends with the last ')':
	// state is field 3, nice is field 19.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 19-3+1 {
		return 0, fmt.Errorf("short stat line for thread %d", tid)
	}
	return strconv.Atoi(f[19-3])
}

// waitThreadGone waits for an OS thread of this process to end; t may be
// nil (a child process, bounded by its parent's wait).
func waitThreadGone(t testing.TB, tid int) error {
	return patience.Retry(t, func() error {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); !os.IsNotExist(err) {
			return fmt.Errorf("low-priority thread %d still exists after stop", tid)
		}
		return nil
	})
}

const mainThreadChildEnv = "WARDEN_RECORDING_MAIN_THREAD_CHILD"

// init runs on the process's main thread. In the child of
// TestLowPriorityWorkerOnMainThread it starts a worker right there, which
// is otherwise up to the scheduler (it once happened in CI).
func init() {
	if os.Getenv(mainThreadChildEnv) == "" {
		return
	}
	if err := mainThreadChild(); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func mainThreadChild() error {
	if !onMainThread() {
		return errors.New("init does not run on the main thread")
	}
	p := &lowPriority{work: make(chan func())}
	started := make(chan error, 1)
	p.worker(started) // returns at once: the work moved to another thread
	if err := <-started; err != nil {
		return err
	}
	var tid int
	p.run(func() { tid = unix.Gettid() })
	if tid == unix.Getpid() {
		return errors.New("recording work ran on the main thread")
	}
	if n, err := readThreadNice(tid); err != nil || n != recordingNice {
		return fmt.Errorf("worker thread nice %d (%v), want %d", n, err, recordingNice)
	}
	if n, err := readThreadNice(unix.Getpid()); err != nil || n != 0 {
		return fmt.Errorf("main thread nice %d (%v), want 0", n, err)
	}
	p.stop()
	if err := waitThreadGone(nil, tid); err != nil {
		return err
	}
	// The main thread was given back: it still runs Go code.
	if !onMainThread() {
		return errors.New("main thread lost")
	}
	return nil
}

// TestLowPriorityWorkerOnMainThread: a worker that starts on the main
// thread, which Go can never end, moves to a thread of its own and leaves
// the main thread (whose nice value is the process's) at normal priority.
func TestLowPriorityWorkerOnMainThread(t *testing.T) {
	cmd := exec.CommandContext(patience.Context(t), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainThreadChildEnv+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// TestLowPriorityThreads: recording work runs on threads with the lowest
// nice value, other threads keep theirs, and the low-priority threads end
// with the pool instead of going back to run other goroutines.
func TestLowPriorityThreads(t *testing.T) {
	p := newLowPriority(2, slog.New(slog.DiscardHandler))
	if p == nil {
		t.Fatal("no low-priority pool on Linux")
	}
	tids := map[int]bool{}
	for range 20 {
		p.run(func() {
			tid := unix.Gettid()
			tids[tid] = true
			if n := threadNice(t, tid); n != recordingNice {
				t.Errorf("recording work on thread %d with nice %d, want %d", tid, n, recordingNice)
			}
		})
	}
	if len(tids) == 0 || len(tids) > 2 {
		t.Errorf("work ran on %d threads, want 1 or 2", len(tids))
	}
	done := make(chan int)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		done <- threadNice(t, unix.Gettid())
	}()
	if n := <-done; n != 0 {
		t.Errorf("another thread has nice %d", n)
	}
	p.stop()
	for tid := range tids {
		if tid == unix.Getpid() {
			t.Errorf("recording work ran on the main thread")
			continue
		}
		if err := waitThreadGone(t, tid); err != nil {
			t.Fatal(err)
		}
	}
	if n := threadNice(t, unix.Getpid()); n != 0 {
		t.Errorf("main thread (the process's nice value) has nice %d", n)
	}
}

// TestRecordingFlushPriority: a recording that keeps up is encoded and
// written at low priority, in steps that give the runtime's P back between
// them; one whose queue backed up is flushed at normal priority, so a
// saturated machine cannot starve it.
func TestRecordingFlushPriority(t *testing.T) {
	st := newStore(t)
	sp := newSpool(t, t.TempDir(), &directUploader{store: st, nodeID: "node-1"},
		func(c *SpoolConfig) { c.FlushInterval = time.Hour }) // flushes by kick only
	r, err := sp.Start(testMeta("9a9a"), testHeader(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Output(bytes.Repeat([]byte("x"), maxPending/2)); err != nil {
		t.Fatal(err)
	}
	if err := r.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := r.lowFlushes.Load(); n != 0 {
		t.Errorf("a backed-up queue was flushed at low priority (%d runs)", n)
	}
	// PTY-sized events, as a session records them.
	for range 2 * kickSize / 4096 {
		if err := r.Output(bytes.Repeat([]byte("y"), 4096)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := patience.Deadline(t)
	for r.lowFlushes.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a recording that keeps up was never flushed at low priority")
		}
		time.Sleep(5 * time.Millisecond)
	}
	length, sum, err := r.Close()
	if err != nil {
		t.Fatal(err)
	}
	// A kick comes with at least kickSize queued: more than one step.
	if flushes, steps := r.lowFlushes.Load(), r.lowSteps.Load(); steps <= flushes {
		t.Errorf("%d low-priority flushes took %d steps: each ran in one piece", flushes, steps)
	}
	waitPending(t, sp, 0)
	if b, _ := stored(t, st, "9a9a"); int64(len(b)) != length || sha(b) != sum {
		t.Fatalf("stored %d bytes %s, recorded %d %s", len(b), sha(b), length, sum)
	}
}
