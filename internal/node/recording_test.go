//go:build integration

package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/asciicast"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/testkit"
)

// spoolRecorder adapts a recording.Spool to Recorder, as the node agent's
// wiring does.
type spoolRecorder struct {
	spool  *recording.Spool
	starts atomic.Int64
}

func (r *spoolRecorder) Start(_ context.Context, m RecordingMeta) (SessionRecorder, error) {
	r.starts.Add(1)
	rec, err := r.spool.Start(recording.Meta{
		SessionID: m.SessionID, User: m.User, Login: m.Login, Node: m.NodeName, NodeID: m.NodeID,
		RemoteAddr: m.RemoteAddr, Start: m.Start,
	}, asciicast.Header{Width: m.Cols, Height: m.Rows, Env: map[string]string{"TERM": m.Term, "SHELL": m.Shell}}, m.RecordInput)
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// storeUploader is the node-to-auth transport without the network.
type storeUploader struct {
	store  *recording.Store
	nodeID string
}

func (u storeUploader) Upload(_ context.Context, meta recording.Meta, offset int64, data []byte) error {
	_, err := u.store.Append(meta, u.nodeID, offset, data)
	return err
}

func (u storeUploader) Complete(_ context.Context, meta recording.Meta, length int64, sum string, interrupted bool) error {
	return u.store.Complete(meta.SessionID, u.nodeID, length, sum, interrupted)
}

// recordingEnv is a node whose sessions are recorded into a real spool and
// store.
type recordingEnv struct {
	*env
	store *recording.Store
	spool *recording.Spool
	rec   *spoolRecorder
}

func newRecordingEnv(t testing.TB, mode string, input bool) *recordingEnv {
	return newRecordingEnvUploader(t, mode, input, nil)
}

// newRecordingEnvUploader is newRecordingEnv with another uploader (nil:
// straight into the env's store).
func newRecordingEnvUploader(t testing.TB, mode string, input bool, up recording.Uploader) *recordingEnv {
	t.Helper()
	store, err := recording.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if up == nil {
		up = storeUploader{store: store, nodeID: "node-1"}
	}
	spool, err := recording.OpenSpool(context.Background(), recording.SpoolConfig{
		Dir: t.TempDir(), Uploader: up, FlushInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() }) // after the server's Close (cleanups run in reverse)
	rec := &spoolRecorder{spool: spool}
	e := newEnv(t, func(c *Config) { c.Recorder = rec })
	e.setAuthz(withRecording(mode, input))
	return &recordingEnv{env: e, store: store, spool: spool, rec: rec}
}

func withRecording(mode string, input bool) authzFunc {
	return func(ctx context.Context, req AuthzRequest) (*Permissions, error) {
		p, err := allowAll(ctx, req)
		if p != nil {
			p.RecordMode, p.RecordInput = mode, input
		}
		return p, err
	}
}

// recorded waits until the session's recording is complete on "auth" and
// returns it with its session.end event.
func (e *recordingEnv) recorded(t testing.TB, pred func(audit.Event) bool) ([]byte, *recording.Info, audit.Event) {
	t.Helper()
	end := e.audit.wait(t, audit.SessionEnd, pred)
	deadline := patience.Deadline(t)
	for {
		info, err := e.store.Stat(end.SessionID)
		if err == nil && info.Complete {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recording of %s not complete: %+v %v", end.SessionID, info, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rc, info, err := e.store.Open(end.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b, info, end
}

type castEvents struct {
	header        asciicast.Header
	output, input string
	resizes       []string
}

func parseCast(t testing.TB, b []byte) castEvents {
	t.Helper()
	r, err := asciicast.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("recording does not parse: %v", err)
	}
	ce := castEvents{header: r.Header()}
	var o, in strings.Builder
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("recording does not parse: %v", err)
		}
		switch ev.Type {
		case asciicast.TypeOutput:
			o.WriteString(ev.Data)
		case asciicast.TypeInput:
			in.WriteString(ev.Data)
		case asciicast.TypeResize:
			ce.resizes = append(ce.resizes, ev.Data)
		}
	}
	ce.output, ce.input = o.String(), in.String()
	return ce
}

func TestRecordingWithOpenSSH(t *testing.T) {
	ensureTestUser(t)
	e := newRecordingEnv(t, RecordStrict, false)
	id := e.newIdentity(certOpts{principals: []string{testUser}})
	r := e.ssh(id, testUser, []string{"-tt"}, `echo "recorded-$((6*7))"; seq 1 2000 | tail -n 1; exit 3`)
	if r.code != 3 || !strings.Contains(r.stdout, "recorded-42") {
		t.Fatalf("ssh: %+v", r)
	}
	b, info, end := e.recorded(t, func(ev audit.Event) bool { return ev.Fields["exit_code"] == 3 })
	ce := parseCast(t, b)
	for _, want := range []string{"recorded-42", "2000"} {
		if !strings.Contains(ce.output, want) {
			t.Errorf("recording output lacks %q: %q", want, ce.output)
		}
	}
	if ce.input != "" {
		t.Errorf("input recorded without RecordInput: %q", ce.input)
	}
	if ce.header.Width != 80 || ce.header.Height != 24 || ce.header.Env["SHELL"] == "" || ce.header.Env["TERM"] == "" {
		t.Errorf("header %+v", ce.header)
	}
	if info.User != "alice" || info.Login != testUser || info.Node != "web1" || info.NodeID != "node-1" || info.Interrupted {
		t.Errorf("info %+v", info)
	}
	if end.Fields["recording"] != true || end.Fields["record_mode"] != RecordStrict ||
		end.Fields["recording_length"] != info.Length || end.Fields["recording_sha256"] != info.SHA256 {
		t.Errorf("session.end fields %v; stored length %d sha %s", end.Fields, info.Length, info.SHA256)
	}
	start := e.audit.wait(t, audit.SessionStart, func(ev audit.Event) bool { return ev.SessionID == end.SessionID })
	if start.Fields["recording"] != true {
		t.Errorf("session.start fields %v", start.Fields)
	}
	testkit.WaitFor(t, "spool drained", func() bool { return e.spool.Pending() == 0 })
}

// TestRecordingShellResizeInput drives a shell: typed input (recorded),
// output and a window change.
func TestRecordingShellResizeInput(t *testing.T) {
	ensureTestUser(t)
	e := newRecordingEnv(t, "", true)
	c := e.connect(t, testUser)
	sess, stdin, out := ptyShell(t, c, "vt100")
	fmt.Fprintf(stdin, "echo typed-$((1+1))\n")
	testkit.WaitFor(t, "output %q", func() bool { return strings.Contains(out.String(), "typed-2") }, out)
	if err := sess.WindowChange(50, 132); err != nil {
		t.Fatal(err)
	}
	// The window change and the input travel apart (a request, then
	// data): the shell waits for the new size to reach its terminal.
	fmt.Fprintf(stdin, "until [ \"$(stty size)\" = \"50 132\" ]; do sleep 0.01; done; stty size; exit 0\n")
	testkit.WaitFor(t, "new size in %q", func() bool { return strings.Contains(out.String(), "50 132") }, out)
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	b, _, end := e.recorded(t, func(ev audit.Event) bool { return ev.Login == testUser })
	ce := parseCast(t, b)
	if ce.header.Width != 100 || ce.header.Height != 40 || ce.header.Env["TERM"] != "vt100" {
		t.Errorf("header %+v", ce.header)
	}
	for _, want := range []string{"typed-2", "50 132"} {
		if !strings.Contains(ce.output, want) {
			t.Errorf("recorded output lacks %q: %q", want, ce.output)
		}
	}
	if !strings.Contains(ce.input, "echo typed-$((1+1))\n") || !strings.Contains(ce.input, "stty size") {
		t.Errorf("recorded input %q", ce.input)
	}
	if len(ce.resizes) != 1 || ce.resizes[0] != "132x50" {
		t.Errorf("resizes %v", ce.resizes)
	}
	if end.Fields["record_mode"] != RecordBestEffort || end.Fields["recording"] != true {
		t.Errorf("session.end fields %v", end.Fields)
	}
}

// failingRecorder cannot start recordings.
type failingRecorder struct{ calls atomic.Int64 }

func (f *failingRecorder) Start(context.Context, RecordingMeta) (SessionRecorder, error) {
	f.calls.Add(1)
	return nil, errors.New("spool disk full")
}

func TestRecordingStartFailure(t *testing.T) {
	ensureTestUser(t)
	tests := []struct {
		name     string
		mode     string
		recorder Recorder // nil: no recorder configured
		wantRun  bool
	}{
		{name: "strict refuses", mode: RecordStrict, recorder: &failingRecorder{}},
		{name: "unknown mode is strict", mode: "always", recorder: &failingRecorder{}},
		{name: "strict without recorder refuses", mode: RecordStrict},
		{name: "best effort continues", mode: RecordBestEffort, recorder: &failingRecorder{}, wantRun: true},
		{name: "default continues", mode: "", recorder: &failingRecorder{}, wantRun: true},
		{name: "best effort without recorder", mode: "", wantRun: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if tc.recorder != nil {
					c.Recorder = tc.recorder
				}
			})
			e.setAuthz(withRecording(tc.mode, false))
			id := e.newIdentity(certOpts{principals: []string{testUser}})
			r := e.ssh(id, testUser, []string{"-tt"}, "echo ran-$((2+3))")
			ran := strings.Contains(r.stdout, "ran-5")
			if ran != tc.wantRun {
				t.Fatalf("ran = %v, want %v: %+v", ran, tc.wantRun, r)
			}
			if !tc.wantRun {
				if r.code == 0 || !strings.Contains(r.stderr, msgRecordingUnavailable) {
					t.Fatalf("refusal: code %d stderr %q", r.code, r.stderr)
				}
				ev := e.audit.wait(t, audit.SessionStart, func(ev audit.Event) bool { return !ev.Success })
				if ev.Error != msgRecordingUnavailable || ev.Fields["record_mode"] != RecordStrict {
					t.Errorf("session.start %+v", ev)
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("exit %d: %q", r.code, r.stderr)
			}
			end := e.audit.wait(t, audit.SessionEnd, nil)
			if end.Fields["recording"] != false || end.Fields["record_mode"] != RecordBestEffort {
				t.Errorf("session.end fields %v", end.Fields)
			}
			if _, ok := end.Fields["recording_sha256"]; ok {
				t.Errorf("session.end has a hash without a recording: %v", end.Fields)
			}
		})
	}
}

// TestRecordingNotApplicable: mode off, and exec without a PTY, are not
// recorded even under strict.
func TestRecordingNotApplicable(t *testing.T) {
	ensureTestUser(t)
	for _, tc := range []struct {
		name  string
		mode  string
		extra []string
	}{
		{name: "off with pty", mode: RecordOff, extra: []string{"-tt"}},
		{name: "strict without pty", mode: RecordStrict, extra: []string{"-T"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &failingRecorder{}
			e := newEnv(t, func(c *Config) { c.Recorder = f })
			e.setAuthz(withRecording(tc.mode, true))
			id := e.newIdentity(certOpts{principals: []string{testUser}})
			r := e.ssh(id, testUser, tc.extra, "echo fine")
			if r.code != 0 || !strings.Contains(r.stdout, "fine") {
				t.Fatalf("ssh: %+v", r)
			}
			if n := f.calls.Load(); n != 0 {
				t.Errorf("Recorder.Start called %d times", n)
			}
		})
	}
}

// memRecorder records into memory and fails output after a budget.
type memRecorder struct {
	budget int // bytes of output accepted before failing; <0: unlimited
	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

func (m *memRecorder) Start(context.Context, RecordingMeta) (SessionRecorder, error) { return m, nil }

func (m *memRecorder) Output(p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.budget >= 0 && m.out.Len()+len(p) > m.budget {
		return errors.New("spool write: no space left on device")
	}
	m.out.Write(p)
	return nil
}
func (m *memRecorder) Input([]byte) error    { return nil }
func (m *memRecorder) Resize(int, int) error { return nil }
func (m *memRecorder) Close() (int64, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return int64(m.out.Len()), strings.Repeat("ab", 32), nil
}

// TestRecordingWriteFailure: the recording breaks mid-session. Strict ends
// the session with a message; best effort lets it finish.
func TestRecordingWriteFailure(t *testing.T) {
	ensureTestUser(t)
	for _, mode := range []string{RecordStrict, RecordBestEffort} {
		t.Run(mode, func(t *testing.T) {
			m := &memRecorder{budget: 4096}
			e := newEnv(t, func(c *Config) { c.Recorder = m })
			e.setAuthz(withRecording(mode, false))
			id := e.newIdentity(certOpts{principals: []string{testUser}})
			command := `for i in $(seq 1 3000); do echo "row $i"; done; echo finished`
			if mode == RecordStrict {
				// Only the recording's failure can end this session.
				command = `for i in $(seq 1 3000); do echo "row $i"; done; sleep infinity; echo finished`
			}
			r := e.ssh(id, testUser, []string{"-tt"}, command)
			end := e.audit.wait(t, audit.SessionEnd, nil)
			if end.Fields["recording"] != true || end.Fields["recording_error"] == nil {
				t.Errorf("session.end fields %v", end.Fields)
			}
			m.mu.Lock()
			closed, got := m.closed, m.out.Len()
			m.mu.Unlock()
			if !closed || got > 4096 {
				t.Errorf("recorder closed %v with %d bytes", closed, got)
			}
			if mode == RecordStrict {
				if r.code == 0 || strings.Contains(r.stdout, "finished") || !strings.Contains(r.stderr+r.stdout, msgRecordingFailed) {
					t.Fatalf("strict session went on: code %d, stderr %q, stdout tail %q", r.code, r.stderr, tail(r.stdout))
				}
				if strings.Contains(r.stdout, "row 3000") {
					t.Error("output after the recording failed reached the user")
				}
				return
			}
			if r.code != 0 || !strings.Contains(r.stdout, "row 3000") || !strings.Contains(r.stdout, "finished") {
				t.Fatalf("best effort session: code %d stderr %q stdout tail %q", r.code, r.stderr, tail(r.stdout))
			}
		})
	}
}

func tail(s string) string {
	if len(s) > 200 {
		return s[len(s)-200:]
	}
	return s
}

// BenchmarkRecordingOverhead measures bulk interactive output through a
// real SSH PTY session with recording off and on (best effort, real spool),
// alternating in one run, and reports both throughputs and their ratio.
// "store" uploads into a Store on this machine (auth's disk work competes
// for the same CPUs); "remote" acknowledges uploads without storing them,
// as when auth runs elsewhere.
func BenchmarkRecordingOverhead(b *testing.B) {
	b.Run("store", func(b *testing.B) { benchRecordingOverhead(b, nil) })
	b.Run("remote", func(b *testing.B) { benchRecordingOverhead(b, discardUploader{}) })
}

type discardUploader struct{}

func (discardUploader) Upload(context.Context, recording.Meta, int64, []byte) error { return nil }
func (discardUploader) Complete(context.Context, recording.Meta, int64, string, bool) error {
	return nil
}

func benchRecordingOverhead(b *testing.B, up recording.Uploader) {
	ensureTestUser(b)
	e := newRecordingEnvUploader(b, RecordBestEffort, false, up)
	id := e.newIdentity(certOpts{principals: []string{testUser}})
	const size = 32 << 20
	cmd := fmt.Sprintf(`yes "drwxr-xr-x 2 alice staff 4096 Nov 22 05:31 directory-name-12345" | head -c %d`, size)

	run := func(mode string) time.Duration {
		e.setAuthz(withRecording(mode, false))
		c, err := e.client(id, testUser)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if err := s.RequestPty("xterm", 40, 120, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
			b.Fatal(err)
		}
		var n countWriter
		s.Stdout = &n
		start := time.Now()
		if err := s.Run(cmd); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		if n < size {
			b.Fatalf("received %d bytes, want >= %d", n, size)
		}
		return d
	}
	var off, on time.Duration
	b.SetBytes(2 * size)
	for b.Loop() {
		off += run(RecordOff)
		on += run(RecordBestEffort)
		b.StopTimer()
		testkit.WaitFor(b, "spool drained", func() bool { return e.spool.Pending() == 0 })
		list, _ := e.store.List()
		for _, in := range list {
			e.store.Delete(in.SessionID)
		}
		b.StartTimer()
	}
	if e.rec.starts.Load() == 0 {
		b.Fatal("nothing was recorded")
	}
	mb := float64(size) / 1e6 * float64(b.N)
	b.ReportMetric(mb/off.Seconds(), "off_MB/s")
	b.ReportMetric(mb/on.Seconds(), "on_MB/s")
	b.ReportMetric(off.Seconds()/on.Seconds(), "on/off")
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
