package node

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"golang.org/x/crypto/ssh"
)

// Session kinds, as reported in audit events.
const (
	kindShell = "shell"
	kindExec  = "exec"
)

// session is one "session" channel.
type session struct {
	c  *conn
	ch ssh.Channel
	id string

	wg sync.WaitGroup // goroutines to wait for before the session ends

	mu      sync.Mutex
	env     []string
	pty     *ptyRequest
	proc    *proc
	agent   *agentForward
	rec     *sessionRecording // nil: not recorded
	started bool

	// eofMu orders notices (which may come from another goroutine, e.g. a
	// lock) with the end of output: x/crypto/ssh channels do not allow a
	// Write concurrent with CloseWrite.
	eofMu   sync.Mutex
	eofSent bool

	// participants are users joined to this (PTY) session.
	partMu       sync.Mutex
	participants map[*participant]struct{}
	// observed is the session's output while others may join (notices
	// go through it), under partMu.
	observed *observedWriter
}

func newSession(c *conn, ch ssh.Channel) *session {
	return &session{c: c, ch: ch, id: newID()}
}

// serve handles channel requests until the channel closes, then ends
// whatever still runs.
func (s *session) serve(ctx context.Context, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(ctx)
	for req := range reqs {
		ok, begin := s.handle(ctx, req)
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
		if begin != nil {
			// Only after the reply: the process may finish (and close the
			// channel) at once.
			s.wg.Go(func() { begin(ctx) })
		}
	}
	cancel()
	s.wg.Wait()
	s.ch.Close()
}

func (s *session) log() *slog.Logger {
	return s.c.log.With(slog.String("session_id", s.id))
}

// event returns an audit event for this session.
func (s *session) event(name string) audit.Event {
	ev := s.c.event(name)
	ev.SessionID = s.id
	return ev
}

// freeze halts the session's processes (with session cgroups), for a
// revocation: right after the connection is cut; they are killed a moment
// later (revokeKillDelay).
func (s *session) freeze() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil && p.cg != nil {
		p.cg.freeze()
	}
}

// notify writes a message to the client's stderr.
func (s *session) notify(msg string) {
	s.eofMu.Lock()
	defer s.eofMu.Unlock()
	if s.eofSent {
		return
	}
	_, _ = s.ch.Stderr().Write([]byte("\r\nwarden: " + msg + "\r\n"))
}

// handle processes one channel request. A non-nil begin runs the started
// process once the request is acknowledged.
func (s *session) handle(ctx context.Context, req *ssh.Request) (ok bool, begin func(context.Context)) {
	perms := &s.c.auth.perms
	if perms.JoinOnly {
		return s.handleJoinOnly(ctx, req)
	}
	switch req.Type {
	case "pty-req":
		if !perms.PTY {
			s.notify("a terminal (PTY) is not allowed by your roles")
			return false, nil
		}
		r, err := parsePtyRequest(req.Payload)
		if err != nil {
			s.log().Debug("bad pty-req", slog.Any("err", err))
			return false, nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.started || s.pty != nil {
			return false, nil
		}
		s.pty = &r
		return true, nil
	case "env":
		e, err := parseEnv(req.Payload)
		if err != nil {
			return false, nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.started || len(s.env) >= maxEnvVars {
			return false, nil
		}
		s.env = append(s.env, e.Name+"="+e.Value)
		return true, nil
	case "window-change":
		w, err := parseWindowChange(req.Payload)
		if err != nil {
			return false, nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.pty != nil {
			s.pty.Columns, s.pty.Rows, s.pty.WidthPx, s.pty.HeightPx = w.Columns, w.Rows, w.WidthPx, w.HeightPx
		}
		if s.rec != nil {
			// Strict mode ends the session on failure; the resize itself
			// still applies meanwhile.
			_ = s.rec.resize(recordDim(w.Columns, 80), recordDim(w.Rows, 24))
		}
		if s.proc != nil {
			return s.proc.setSize(w) == nil, nil
		}
		return true, nil
	case "signal":
		sig, err := parseSignal(req.Payload)
		if err != nil {
			return false, nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.proc == nil {
			return false, nil
		}
		return s.proc.signal(sig) == nil, nil
	case "shell":
		return s.start(ctx, kindShell, "")
	case "exec":
		cmd, err := parseExec(req.Payload)
		if err != nil {
			s.notify("invalid command")
			return false, nil
		}
		if !perms.FileTransfer {
			if why, ok := fileTransferCommand(cmd); ok {
				ev := s.event(audit.Exec)
				ev.Success, ev.Error = false, "file transfer not allowed: the command "+why
				ev.Fields = map[string]any{"command": cmd, "refused": "file_transfer"}
				s.c.srv.emit(ctx, ev)
				return s.refuse(ctx, msgNoFileTransfer+": the command "+why)
			}
		}
		return s.start(ctx, kindExec, cmd)
	case "subsystem":
		name, err := parseSubsystem(req.Payload)
		if err != nil {
			return false, nil
		}
		if name != "sftp" {
			return s.refuse(ctx, fmt.Sprintf("subsystem %q is not supported", name))
		}
		if !perms.FileTransfer {
			ev := s.event(audit.SFTP)
			ev.Success, ev.Error = false, "file transfer not allowed: sftp subsystem"
			ev.Fields = map[string]any{"op": "subsystem", "refused": "file_transfer"}
			s.c.srv.emit(ctx, ev)
			return s.refuse(ctx, msgNoFileTransfer)
		}
		return s.startSFTP(ctx)
	case "auth-agent-req@openssh.com":
		if !perms.ForwardAgent {
			return false, nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.started || s.agent != nil {
			return false, nil
		}
		af, err := s.startAgentForward(ctx, &s.wg)
		if err != nil {
			s.log().Error("agent forwarding", slog.Any("err", err))
			return false, nil
		}
		s.agent = af
		return true, nil
	default:
		// x11-req, keepalive@openssh.com, ...
		return false, nil
	}
}

// refuse accepts a start request and then fails it with msg on stderr and
// exit status 1. OpenSSH clients exit at once on a failed exec or
// subsystem request without showing stderr, so a reply of false would hide
// the reason.
func (s *session) refuse(ctx context.Context, msg string) (bool, func(context.Context)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return false, nil
	}
	return s.refuseLocked(msg)
}

// refuseLocked is refuse for callers holding s.mu.
func (s *session) refuseLocked(msg string) (bool, func(context.Context)) {
	s.started = true
	s.log().Info("request refused", slog.String("reason", msg))
	return true, func(context.Context) {
		s.closeOutput("warden: " + msg + "\n")
		s.exit(1)
	}
}

// closeOutput writes last (if any) to stderr and ends the channel's output;
// notices (notify) are not written after it.
func (s *session) closeOutput(last string) {
	s.eofMu.Lock()
	defer s.eofMu.Unlock()
	if last != "" {
		_, _ = s.ch.Stderr().Write([]byte(last))
	}
	s.eofSent = true
	_ = s.ch.CloseWrite()
}

// exit reports status and closes the channel.
func (s *session) exit(status uint32) {
	_, _ = s.ch.SendRequest("exit-status", false, ssh.Marshal(exitStatusMsg{Status: status}))
	_ = s.ch.Close()
}

// msgNoFileTransfer is what a user without file_transfer is told.
const msgNoFileTransfer = "file transfer (scp, sftp, rsync) is not allowed by your roles"

// sshEnv is SSH_CLIENT and SSH_CONNECTION like sshd sets them.
func (s *session) sshEnv() []string {
	rh, rp := splitAddr(s.c.sconn.RemoteAddr())
	lh, lp := splitAddr(s.c.sconn.LocalAddr())
	return []string{
		fmt.Sprintf("SSH_CLIENT=%s %s %s", rh, rp, lp),
		fmt.Sprintf("SSH_CONNECTION=%s %s %s %s", rh, rp, lh, lp),
	}
}

func splitAddr(a net.Addr) (host, port string) {
	host, port, err := net.SplitHostPort(addrString(a))
	if err != nil {
		return "UNKNOWN", "0"
	}
	return host, port
}

// start runs the login shell (command == "") or command via the shell.
func (s *session) start(ctx context.Context, kind, command string) (bool, func(context.Context)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return false, nil
	}
	if s.c.isExpired() {
		return false, nil
	}
	s.started = true
	u := s.c.auth.user
	env := append(u.baseEnv(), s.sshEnv()...)
	hasTerm := false
	for _, e := range s.env {
		hasTerm = hasTerm || strings.HasPrefix(e, "TERM=")
	}
	env = append(env, s.env...)
	if s.agent != nil {
		env = append(env, "SSH_AUTH_SOCK="+s.agent.sock)
	}
	if s.pty != nil && !hasTerm && s.pty.Term != "" {
		env = append(env, "TERM="+s.pty.Term)
	}
	rec, recFields, refuse := s.startRecording(ctx, kind, env)
	if refuse {
		ev := s.startEvent(kind, command, true, recFields)
		ev.Success, ev.Error = false, msgRecordingUnavailable
		s.c.srv.emit(ctx, ev)
		return s.refuseLocked(msgRecordingUnavailable)
	}
	// runCtx ends the process early when strict recording fails.
	runCtx, cancelRun := context.WithCancel(ctx)
	if rec != nil {
		rec.onFail = func() {
			s.notify(msgRecordingFailed)
			cancelRun()
		}
	}
	spec := procSpec{path: u.Shell, env: env, dir: u.workDir(), user: u, pty: s.pty}
	if kind == kindShell {
		spec.argv = []string{shellArgv0(u.Shell)}
	} else {
		spec.argv = []string{filepath.Base(u.Shell), "-c", command}
	}
	if h := s.c.srv.cgroups; h != nil {
		cg, err := newSessionCgroup(h, s.id)
		if err != nil {
			s.log().Warn("session cgroup unavailable; revoking access ends this session's process group only", slog.Any("err", err))
		} else {
			spec.cgroup, spec.revoked = cg, s.c.isRevoked
		}
	}
	p, err := s.c.srv.startProc(spec)
	if err != nil {
		if spec.cgroup != nil {
			spec.cgroup.remove(false)
		}
		cancelRun()
		if rec != nil {
			rec.close(map[string]any{})
		}
		s.log().Error("start session process", slog.String("kind", kind), slog.Any("err", err))
		s.notify("could not start the session")
		if kind == kindExec {
			ev := s.event(audit.Exec)
			ev.Success, ev.Error = false, "could not start process"
			ev.Fields = map[string]any{"command": command}
			s.c.srv.emit(ctx, ev)
		}
		return false, nil
	}
	s.proc = p
	s.rec = rec
	// Every shell and command is a live session (sessions ls, locks,
	// session.end), with or without a terminal: a command run without one
	// is not hidden from the session list.
	s.c.srv.emit(ctx, s.startEvent(kind, command, s.pty != nil, recFields))
	s.log().Info("session started", slog.String("kind", kind), slog.Bool("tty", s.pty != nil), slog.Bool("recording", rec != nil))
	return true, func(context.Context) {
		defer cancelRun()
		streams := ioStreams{in: activityReader{s.ch, s.c}, out: activityWriter{s.ch, s.c}, errOut: s.ch.Stderr()}
		if rec != nil {
			streams.out = recordingWriter{w: streams.out, rec: rec}
			if s.pty == nil {
				// Without a PTY, stderr is a separate stream: record it too.
				streams.errOut = recordingWriter{w: streams.errOut, rec: rec}
			}
			if rec.input {
				streams.in = recordingReader{r: streams.in, rec: rec}
			}
		}
		joinable := s.pty != nil
		if joinable {
			// Others may join (warden join) and see the output from then on.
			ow := &observedWriter{w: streams.out, sess: s}
			streams.out = ow
			s.partMu.Lock()
			s.observed = ow
			s.partMu.Unlock()
			s.c.srv.registerLive(s)
		}
		st := p.run(runCtx, streams, &s.wg)
		if joinable {
			s.observed.close()
		}
		if p.releaseCgroup() {
			// Jobs the user detached live on: a later revocation of
			// this user's access ends them too.
			s.c.srv.trackDetached(s.id, p.cg, s.c.info())
		}
		if joinable {
			s.c.srv.unregisterLive(s)
		}
		endFields := map[string]any{"record_mode": recFields["record_mode"], "recording": false}
		if e, ok := recFields["recording_error"]; ok {
			endFields["recording_error"] = e
		}
		if rec != nil {
			// Output is drained: the recording is complete. Late input
			// (the client's stream still open) is ignored from here.
			rec.close(endFields)
		}
		code := s.finish(st)
		if kind == kindExec {
			ev := s.event(audit.Exec)
			ev.Success = code == 0
			ev.Fields = map[string]any{"command": command, "exit_code": code, "tty": s.pty != nil}
			if r := s.c.reason(); r != "" {
				ev.Fields["reason"] = r
			}
			s.c.srv.emit(ctx, ev)
		}
		end := s.event(audit.SessionEnd)
		end.Fields = map[string]any{"kind": kind, "exit_code": code, "tty": s.pty != nil}
		maps.Copy(end.Fields, endFields)
		if r := s.c.reason(); r != "" {
			end.Fields["reason"] = r
		}
		if p.killed {
			end.Fields["processes_killed"] = true // the whole session cgroup
		}
		s.c.srv.emit(ctx, end)
	}
}

// startEvent is the session.start event of a shell or command.
func (s *session) startEvent(kind, command string, tty bool, recFields map[string]any) audit.Event {
	ev := s.event(audit.SessionStart)
	ev.Fields = map[string]any{"kind": kind, "tty": tty}
	maps.Copy(ev.Fields, recFields)
	if command != "" {
		ev.Fields["command"] = command
	}
	// The MFA device of the certificate, and whether it is a per-session
	// MFA one (a fresh check for this session: mfa_verified).
	if id, ok := s.c.auth.perms.Identity.(*ca.CertIdentity); ok && id != nil {
		if id.MFADevice != "" {
			ev.Fields["mfa_device"] = id.MFADevice
		}
		if id.SessionMFA != nil {
			ev.Fields["mfa_verified"] = true
		}
	}
	return ev
}

// finish reports the exit status (or signal) and closes the channel.
// It returns the exit code.
func (s *session) finish(ps *os.ProcessState) int {
	code, sig, core := exitInfo(ps)
	s.closeOutput("")
	if sig == 0 {
		s.exit(uint32(code))
		return code
	}
	_, _ = s.ch.SendRequest("exit-signal", false, ssh.Marshal(exitSignalMsg{Signal: signalName(sig), CoreDumped: core}))
	_ = s.ch.Close()
	return code
}
