package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/policy"
)

// Joining a live session: a user connects with their internal principal
// as the login (ca.InternalPrincipalPrefix + name: a join-only connection,
// no OS account) and runs `join <session id> <mode>`. An observer receives
// the session's terminal output from the moment it joins; a peer may also
// type. The node asks Config.JoinPolicy, and audits session.join and
// session.leave.

// JoinPolicy decides whether joiner may join, in mode, a live session of
// owner, who holds ownerRoles; the error is a short reason for the user.
type JoinPolicy func(joiner Permissions, owner string, ownerRoles []string, mode string) error

// joinBuffer bounds the output chunks queued for one participant; one who
// falls further behind is disconnected rather than slowing the session.
const joinBuffer = 1024

// participant is a user joined to another user's session.
type participant struct {
	out  chan []byte
	gone chan struct{}
	once sync.Once
	// why is set when the session (not the participant) ended it.
	why string
}

func (p *participant) leave(why string) {
	p.once.Do(func() {
		p.why = why
		close(p.gone)
	})
}

// registerLive makes a PTY session joinable.
func (s *Server) registerLive(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live == nil {
		s.live = map[string]*session{}
	}
	s.live[sess.id] = sess
}

func (s *Server) unregisterLive(sess *session) {
	s.mu.Lock()
	delete(s.live, sess.id)
	s.mu.Unlock()
	sess.partMu.Lock()
	parts := sess.participants
	sess.participants = nil
	sess.partMu.Unlock()
	for p := range parts {
		p.leave("the session ended")
	}
}

func (s *Server) liveSession(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[id]
}

// broadcast hands session output to every participant without blocking.
func (sess *session) broadcast(b []byte) {
	sess.partMu.Lock()
	defer sess.partMu.Unlock()
	if len(sess.participants) == 0 || len(b) == 0 {
		return
	}
	c := append([]byte(nil), b...)
	for p := range sess.participants {
		select {
		case p.out <- c:
		default:
			delete(sess.participants, p)
			p.leave("you fell too far behind the session's output")
		}
	}
}

// observedWriter passes session output on to its participants, and
// writes join notices between two of its writes (the owner's terminal
// output is never cut by one): to the owner, into the recording, and to
// every participant, as output.
type observedWriter struct {
	w    io.Writer
	sess *session

	mu     sync.Mutex // orders writes and notices
	closed bool       // output has ended: no more notices

	nmu     sync.Mutex
	notices []string
}

// maxWaitingNotices bounds the notices waiting for a write to end.
const maxWaitingNotices = 16

func (o *observedWriter) Write(b []byte) (int, error) {
	o.mu.Lock()
	n, err := o.w.Write(b)
	o.sess.broadcast(b[:n])
	o.mu.Unlock()
	if o.hasNotices() {
		o.kick()
	}
	return n, err
}

func (o *observedWriter) hasNotices() bool {
	o.nmu.Lock()
	defer o.nmu.Unlock()
	return len(o.notices) > 0
}

// notice queues msg for the terminal; it never blocks on the client.
func (o *observedWriter) notice(msg string) {
	o.nmu.Lock()
	if len(o.notices) >= maxWaitingNotices {
		o.nmu.Unlock()
		return
	}
	o.notices = append(o.notices, msg)
	o.nmu.Unlock()
	go o.kick()
}

// kick writes the waiting notices unless a write is in progress (whose
// writer calls kick when it ends).
func (o *observedWriter) kick() {
	for o.hasNotices() {
		if !o.mu.TryLock() {
			return
		}
		o.nmu.Lock()
		notices := o.notices
		o.notices = nil
		o.nmu.Unlock()
		for _, msg := range notices {
			if o.closed {
				break
			}
			n, _ := o.w.Write([]byte(msg))
			o.sess.broadcast([]byte(msg)[:n])
		}
		o.mu.Unlock()
	}
}

// close ends notices: the session's output has ended (a write after the
// channel's CloseWrite is not allowed).
func (o *observedWriter) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
}

// notice tells a live session's owner (and its participants) on the
// terminal that someone joined or left.
func (sess *session) notice(msg string) {
	sess.partMu.Lock()
	o := sess.observed
	sess.partMu.Unlock()
	if o != nil {
		o.notice(msg)
	}
}

// handleJoinOnly serves the requests of a session channel on a join-only
// connection: terminal setup is accepted (and ignored), `join` runs, and
// everything else is refused.
func (s *session) handleJoinOnly(ctx context.Context, req *ssh.Request) (bool, func(context.Context)) {
	switch req.Type {
	case "pty-req", "window-change", "env":
		return true, nil
	case "exec":
		var r struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &r); err != nil {
			return false, nil
		}
		return s.join(ctx, r.Command)
	}
	s.notify("this connection may only join sessions (warden join)")
	return false, nil
}

// join attaches this channel to another session as command asks
// ("join <session id> <mode>").
func (s *session) join(ctx context.Context, command string) (bool, func(context.Context)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return false, nil
	}
	f := strings.Fields(command)
	if len(f) != 3 || f[0] != "join" || (f[2] != policy.JoinObserver && f[2] != policy.JoinPeer) || len(f[1]) > 64 {
		return s.refuseLocked(`usage: join <session id> observer|peer`)
	}
	id, mode := f[1], f[2]
	srv := s.c.srv
	target := srv.liveSession(id)
	joiner := s.c.auth.perms
	ev := s.event(audit.SessionJoin)
	ev.SessionID = id
	ev.Fields = map[string]any{"mode": mode}
	if target == nil {
		ev.Success, ev.Error = false, "no such live session"
		srv.emit(ctx, ev)
		return s.refuseLocked(fmt.Sprintf("no live session %s on this node (see warden sessions ls)", id))
	}
	owner := target.c.auth.perms
	ev.Login = target.c.auth.login
	ev.Fields["owner"] = owner.User
	if srv.cfg.JoinPolicy == nil {
		ev.Success, ev.Error = false, "joining is not configured on this node"
		srv.emit(ctx, ev)
		return s.refuseLocked("this node does not allow joining sessions")
	}
	if err := srv.cfg.JoinPolicy(joiner, owner.User, owner.Roles, mode); err != nil {
		ev.Success, ev.Error = false, err.Error()
		srv.emit(ctx, ev)
		return s.refuseLocked(err.Error())
	}
	p := &participant{out: make(chan []byte, joinBuffer), gone: make(chan struct{})}
	target.partMu.Lock()
	if target.participants == nil {
		target.participants = map[*participant]struct{}{}
	}
	target.participants[p] = struct{}{}
	target.partMu.Unlock()
	if srv.liveSession(id) == nil { // it ended meanwhile
		p.leave("the session ended")
	}
	s.started = true
	srv.emit(ctx, ev)
	target.notice(policy.JoinNotice(joiner.User, mode, true))
	s.log().Info("joined session", slog.String("target", id), slog.String("mode", mode), slog.String("owner", owner.User))
	return true, func(ctx context.Context) {
		defer func() {
			target.partMu.Lock()
			delete(target.participants, p)
			target.partMu.Unlock()
			leave := s.event(audit.SessionLeave)
			leave.SessionID, leave.Login = id, target.c.auth.login
			leave.Fields = map[string]any{"mode": mode, "owner": owner.User}
			srv.emit(context.WithoutCancel(ctx), leave)
			target.notice(policy.JoinNotice(joiner.User, mode, false))
		}()
		_, _ = fmt.Fprintf(s.ch.Stderr(), "warden: joined %s's session %s as %s\r\n", owner.User, id, mode)
		if mode == policy.JoinPeer {
			// A peer whose input ends (Ctrl-] in warden join) leaves.
			s.wg.Go(func() { target.peerInput(s.ch); p.leave("") })
		}
		for {
			select {
			case b := <-p.out:
				if _, err := s.ch.Write(b); err != nil {
					p.leave("")
				}
			case <-p.gone:
				last := ""
				if p.why != "" {
					last = "\r\nwarden: " + p.why + "\r\n"
				}
				s.closeOutput(last)
				s.exit(0)
				return
			case <-ctx.Done():
				p.leave("")
			}
		}
	}
}

// peerInput copies what a peer types into the session's terminal (recorded
// like the owner's input when the session records input).
func (sess *session) peerInput(r io.Reader) {
	sess.mu.Lock()
	proc, rec := sess.proc, sess.rec
	sess.mu.Unlock()
	if proc == nil || proc.ptmx == nil {
		return
	}
	var in io.Reader = r
	if rec != nil && rec.input {
		in = recordingReader{r: r, rec: rec}
	}
	_, _ = io.Copy(proc.ptmx, in)
}
