package recording

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
)

// The crash test re-executes the test binary as a "node" that records a
// session and is then killed with SIGKILL.
const (
	childEnv      = "WARDEN_RECORDING_CRASH_CHILD"
	childSpoolEnv = "WARDEN_RECORDING_CRASH_SPOOL"
	childStoreEnv = "WARDEN_RECORDING_CRASH_STORE" // empty: auth unreachable
	crashID       = "c7a5b0de"
	crashSynced   = 400 // lines written and fsynced before the kill
	crashBuffered = 5   // lines still in memory at the kill
)

func crashLine(n int) string { return fmt.Sprintf("crash line %05d ✓\r\n", n) }

// runCrashChild is the child's main: record, sync, report, wait for death.
func runCrashChild() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 2 }
	var up Uploader = unreachable{}
	var direct *directUploader
	if dir := os.Getenv(childStoreEnv); dir != "" {
		st, err := OpenStore(dir)
		if err != nil {
			return fail(err)
		}
		direct = &directUploader{store: st, nodeID: "node-1"}
		direct.before = func(call int64, _ Meta, _ int64) {
			if call == 3 {
				direct.down.Store(true) // this is the last call that gets through
			}
		}
		up = direct
	}
	sp, err := OpenSpool(context.Background(), SpoolConfig{
		Dir: os.Getenv(childSpoolEnv), Uploader: up,
		FlushInterval: time.Hour, // only explicit Syncs reach the disk
		ChunkSize:     1024, MaxConcurrentUploads: 1, MaxBackoff: 20 * time.Millisecond,
	})
	if err != nil {
		return fail(err)
	}
	r, err := sp.Start(testMeta(crashID), testHeader(), false)
	if err != nil {
		return fail(err)
	}
	for n := range crashSynced {
		if err := r.Output([]byte(crashLine(n))); err != nil {
			return fail(err)
		}
	}
	if err := r.Sync(); err != nil {
		return fail(err)
	}
	if direct != nil {
		// Let part (not all) of it reach auth, and its acknowledgement reach
		// the ack file, before the kill.
		for direct.okCalls.Load() < 3 {
			time.Sleep(time.Millisecond)
		}
		info, err := direct.store.Stat(crashID)
		if err != nil {
			return fail(err)
		}
		for {
			b, _ := os.ReadFile(sp.ackPath(crashID))
			if decodeAck(b) == info.Length {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	for n := crashSynced; n < crashSynced+crashBuffered; n++ {
		if err := r.Output([]byte(crashLine(n))); err != nil {
			return fail(err)
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
	return 0
}

type unreachable struct{}

func (unreachable) Upload(context.Context, Meta, int64, []byte) error { return errUnreachable }
func (unreachable) Complete(context.Context, Meta, int64, string, bool) error {
	return errUnreachable
}

func TestSpoolSurvivesSIGKILL(t *testing.T) {
	for _, authUp := range []bool{false, true} {
		t.Run(fmt.Sprintf("authUp=%v", authUp), func(t *testing.T) {
			spoolDir, storeDir := t.TempDir(), t.TempDir()
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(patience.Context(t), exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=1", childSpoolEnv+"="+spoolDir)
			if authUp {
				cmd.Env = append(cmd.Env, childStoreEnv+"="+storeDir)
			}
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != "ready\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child said %q, %v", line, err)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, stdout)
			err = cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die of SIGKILL: %v", err)
			}

			st, err := OpenStore(storeDir)
			if err != nil {
				t.Fatal(err)
			}
			before := int64(0)
			if info, err := st.Stat(crashID); err == nil {
				before = info.Length
			}
			if authUp && before == 0 {
				t.Fatal("auth received nothing before the kill")
			}
			var offsets []int64
			up := &directUploader{store: st, nodeID: "node-1"}
			up.before = func(call int64, _ Meta, offset int64) {
				if call <= 2 {
					offsets = append(offsets, offset)
				}
			}
			sp := newSpool(t, spoolDir, up)
			waitPending(t, sp, 0)
			// The restarted spool resumes where auth's durable state says:
			// at once, or (auth made only part of what it had acknowledged
			// durable, which it may: the spool still had it) after one
			// refusal that names that offset.
			if authUp && (len(offsets) == 0 || (offsets[0] != before && (len(offsets) < 2 || offsets[1] != before))) {
				t.Errorf("restarted spool sent offsets %v, auth had %d", offsets, before)
			}
			b, info := stored(t, st, crashID)
			if !info.Complete || !info.Interrupted || sha(b) != info.SHA256 || int64(len(b)) <= before {
				t.Fatalf("info %+v (had %d bytes before restart)", info, before)
			}
			out, _, _ := events(t, b)
			var want strings.Builder
			for n := range crashSynced {
				want.WriteString(crashLine(n))
			}
			if out != want.String() {
				t.Errorf("recovered output: %d bytes, want the %d bytes synced before the kill\n%.300q", len(out), want.Len(), out)
			}
		})
	}
}
