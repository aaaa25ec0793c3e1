package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"github.com/warden-sh/warden/internal/audit"
)

// childEnvVar selects the child helper a re-executed binary runs.
const childEnvVar = "WARDEN_NODE_CHILD"

// childSFTP is the value of childEnvVar for the SFTP server child.
const childSFTP = "sftp"

// sftpAuditFD is the child's file descriptor for operation reports.
const sftpAuditFD = 3

// maxSFTPReportLine bounds one operation report from the child.
const maxSFTPReportLine = 64 << 10

// MaybeRunChild runs the node's child helper and exits if this process was
// started as one (environment WARDEN_NODE_CHILD); otherwise it returns
// false. Call it first in main() and in TestMain.
func MaybeRunChild() bool {
	kind := os.Getenv(childEnvVar)
	if kind == "" {
		return false
	}
	_ = os.Unsetenv(childEnvVar)
	switch kind {
	case childSFTP:
		os.Exit(runSFTPChild(os.Stdin, os.Stdout, os.NewFile(sftpAuditFD, "sftp-audit")))
	default:
		fmt.Fprintf(os.Stderr, "warden: unknown node child helper %q\n", kind)
		os.Exit(2)
	}
	return true // unreachable
}

// stdio joins the child's stdin and stdout into the ReadWriteCloser the
// SFTP server wants.
type stdio struct {
	io.Reader
	io.WriteCloser
}

// runSFTPChild serves SFTP on in/out as the current (already dropped)
// user, reporting operations as JSON lines on report. It returns the exit
// code.
func runSFTPChild(in io.Reader, out io.WriteCloser, report io.Writer) int {
	syscall.Umask(0o022)
	dir, err := os.Getwd()
	if err != nil {
		dir = "/"
	}
	fs := &sftpFS{rep: newSFTPReporter(report)}
	h := sftp.Handlers{FileGet: fs, FilePut: fs, FileCmd: fs, FileList: fs}
	srv := sftp.NewRequestServer(stdio{in, out}, h, sftp.WithStartDirectory(dir))
	err = srv.Serve()
	_ = srv.Close()
	if err != nil && err != io.EOF {
		fmt.Fprintf(os.Stderr, "sftp: %v\n", err)
		return 1
	}
	return 0
}

// sftpReport is one operation reported by the SFTP child.
type sftpReport struct {
	Op     string `json:"op"`
	Path   string `json:"path"`
	Target string `json:"target,omitempty"`
	Read   int64  `json:"read,omitempty"`
	Write  int64  `json:"write,omitempty"`
	Error  string `json:"error,omitempty"`
}

// parseSFTPReport decodes and validates one report line.
func parseSFTPReport(line []byte) (sftpReport, error) {
	var r sftpReport
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("sftp report: %w", err)
	}
	switch r.Op {
	case "open", "setstat", "rename", "posix-rename", "rmdir", "mkdir", "link", "symlink", "remove":
	default:
		return r, fmt.Errorf("sftp report: unknown op %q", r.Op)
	}
	if r.Read < 0 || r.Write < 0 {
		return r, fmt.Errorf("sftp report: negative byte count")
	}
	return r, nil
}

// startSFTP starts the SFTP child as the session's user.
func (s *session) startSFTP(ctx context.Context) (bool, func(context.Context)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.c.isExpired() {
		return false, nil
	}
	s.started = true
	u := s.c.auth.user
	child := s.c.srv.cfg.ChildCommand
	path := child[0]
	if !strings.Contains(path, "/") {
		lp, err := exec.LookPath(path)
		if err != nil {
			s.log().Error("find sftp child", slog.Any("err", err))
			s.notify("could not start sftp")
			return false, nil
		}
		path = lp
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		s.log().Error("sftp report pipe", slog.Any("err", err))
		s.notify("could not start sftp")
		return false, nil
	}
	// Execute the binary through a descriptor opened here (as the node's
	// user): the session's user needs execute permission on the file only,
	// not search permission on every directory above it (a binary under
	// /root or a test binary in a private build dir would otherwise fail).
	exe, err := os.Open(path)
	if err != nil {
		repR.Close()
		repW.Close()
		s.log().Error("open sftp child binary", slog.Any("err", err))
		s.notify("could not start sftp")
		return false, nil
	}
	extra := []*os.File{repW, exe}
	env := append(u.baseEnv(), s.sshEnv()...)
	env = append(env, childEnvVar+"="+childSFTP)
	p, err := s.c.srv.startProc(procSpec{
		path: fmt.Sprintf("/proc/self/fd/%d", 3+len(extra)-1), argv: child, env: env, dir: u.workDir(), user: u,
		extra: extra,
	})
	exe.Close()
	repW.Close()
	if err != nil {
		repR.Close()
		s.log().Error("start sftp child", slog.Any("err", err))
		s.notify("could not start sftp")
		return false, nil
	}
	s.proc = p
	s.log().Info("sftp started")
	return true, func(ctx context.Context) {
		reportsDone := make(chan struct{})
		go func() {
			defer close(reportsDone)
			s.readSFTPReports(ctx, repR)
		}()
		stderr := &boundedBuffer{max: 4096}
		st := p.run(ctx, ioStreams{in: s.ch, out: s.ch, errOut: stderr}, &s.wg)
		code := s.finish(st)
		select {
		case <-reportsDone:
		case <-time.After(time.Second):
			// Something else still holds the write end; stop reading.
		}
		repR.Close()
		<-reportsDone
		if code != 0 {
			s.log().Warn("sftp child failed", slog.Int("exit_code", code), slog.String("stderr", stderr.String()))
		}
	}
}

// readSFTPReports turns the child's reports into audit events.
func (s *session) readSFTPReports(ctx context.Context, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxSFTPReportLine)
	for sc.Scan() {
		rep, err := parseSFTPReport(sc.Bytes())
		if err != nil {
			s.log().Warn("bad sftp report", slog.Any("err", err))
			continue
		}
		ev := s.event(audit.SFTP)
		ev.Success = rep.Error == ""
		ev.Error = rep.Error
		ev.Fields = map[string]any{"op": rep.Op, "path": rep.Path}
		if rep.Target != "" {
			ev.Fields["target"] = rep.Target
		}
		if rep.Op == "open" {
			ev.Fields["bytes_read"] = rep.Read
			ev.Fields["bytes_written"] = rep.Write
		}
		s.c.srv.emit(ctx, ev)
	}
}

// boundedBuffer keeps the first max bytes written to it.
type boundedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - len(b.b); room > 0 {
		b.b = append(b.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}
