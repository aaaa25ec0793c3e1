package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/coder/websocket"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/policy"
)

// Joining a kube session: `warden join ID` on a session of kind
// kube-exec or kube-attach asks the proxy, where the session lives, at
// KubeSessionsPrefix+ID with the user's Warden client certificate: as an
// observer, a plain GET whose response body is the session's terminal
// output from then on (flushed as it comes); as an observer or a peer,
// a WebSocket (binary messages: output from the proxy, a peer's input
// from the joiner). The web UI joins in process (JoinKube). Either way
// the decision is JoinKube's: the joiner must be current
// (auth.CurrentCaller), not locked, allowed to get the pod
// (policy.DecideKube: one may join what one may see), and their roles'
// join_sessions must allow the owner's roles in the mode asked
// (policy.CanJoin, as nodes decide). Joins and leaves are audited as a
// node's (session.join, session.leave), which lists the participants in
// sessions ls. A peer's input goes into the session's stdin
// (kubestream.Tap.Inject: between the client's frames, in the client's
// protocol) and into the recording when record_input is on. A lock on
// the joiner ends their participation at once; one who falls behind the
// output is dropped rather than slowing the session.

// KubeSessionsPrefix is where users join kube sessions on the public port.
const KubeSessionsPrefix = "/kube-sessions/"

// kubeJoinBuffer bounds the output chunks queued for one observer.
const kubeJoinBuffer = 1024

type kubeObserver struct {
	out  chan []byte
	gone chan struct{}
}

// broadcast hands terminal output to every observer without blocking.
func (k *kubeSession) broadcast(p []byte) {
	k.obsMu.Lock()
	defer k.obsMu.Unlock()
	if len(k.observers) == 0 || len(p) == 0 {
		return
	}
	c := append([]byte(nil), p...)
	for o := range k.observers {
		select {
		case o.out <- c:
		default:
			delete(k.observers, o)
			close(o.gone)
		}
	}
}

func (k *kubeSession) addObserver() *kubeObserver {
	k.obsMu.Lock()
	defer k.obsMu.Unlock()
	if k.obsClosed {
		return nil
	}
	if k.observers == nil {
		k.observers = map[*kubeObserver]struct{}{}
	}
	o := &kubeObserver{out: make(chan []byte, kubeJoinBuffer), gone: make(chan struct{})}
	k.observers[o] = struct{}{}
	return o
}

func (k *kubeSession) removeObserver(o *kubeObserver) {
	k.obsMu.Lock()
	defer k.obsMu.Unlock()
	if _, ok := k.observers[o]; ok {
		delete(k.observers, o)
		close(o.gone)
	}
}

// closeObservers ends every observer's view: the session ended.
func (k *kubeSession) closeObservers() {
	k.obsMu.Lock()
	defer k.obsMu.Unlock()
	k.obsClosed = true
	for o := range k.observers {
		close(o.out)
	}
	k.observers = nil
}

// kubeRoleLister lists role definitions (auth.Server has it; the kube
// agent's identity may list roles, as a node's may).
type kubeRoleLister interface {
	ListRoles(ctx context.Context, c auth.Caller) ([]*policy.Role, error)
}

// KubeJoinError is a refused join: Code is the HTTP status, Reason the
// Kubernetes Status reason.
type KubeJoinError struct {
	Code   int
	Reason string
	Msg    string
}

func (e *KubeJoinError) Error() string { return e.Msg }

// KubeParticipant is one user's participation in a live kube session
// (JoinKube): read its output with Next, type with Input (peers), end it
// with Leave.
type KubeParticipant struct {
	s      *Server
	ks     *kubeSession
	o      *kubeObserver
	user   string
	remote string
	mode   string
	ctx    context.Context
	cancel context.CancelCauseFunc
	live   *kubeLive
	once   sync.Once
	mu     sync.Mutex
	why    string
	// peer, when set, relays a session that lives at a peer proxy
	// (peerkubejoin.go); ks, o and live are then nil.
	peer *peerKubeJoin
	via  string
}

// ErrKubeSessionEnded is Next's error once the session has ended.
var ErrKubeSessionEnded = errors.New("the session ended")

// JoinKube decides and starts c's participation, in mode (observer or
// peer), in the live kube session id on this proxy; remote is the
// joiner's address. The participation lasts until Leave, a lock on the
// joiner, or the session's end.
// With peering, a session that does not run here is joined through the
// peer where it runs, which decides again (peerkubejoin.go).
func (s *Server) JoinKube(ctx context.Context, c auth.Caller, remote, id, mode string) (*KubeParticipant, error) {
	return s.joinKube(ctx, c, remote, id, mode, "")
}

// joinKube is JoinKube; via is the peer proxy that forwarded the join
// (then it is not forwarded again), "" for a user of this proxy.
func (s *Server) joinKube(ctx context.Context, c auth.Caller, remote, id, mode, via string) (*KubeParticipant, error) {
	refused := func(code int, reason, msg string) error { return &KubeJoinError{Code: code, Reason: reason, Msg: msg} }
	if mode == "" {
		mode = policy.JoinObserver
	}
	if mode != policy.JoinObserver && mode != policy.JoinPeer {
		return nil, refused(http.StatusBadRequest, "BadRequest", "warden: the mode must be observer or peer")
	}
	if c.Kind != auth.KindUser {
		return nil, refused(http.StatusUnauthorized, "Unauthorized", "warden: only users join sessions")
	}
	cur, err := s.cfg.Directory.CurrentCaller(ctx, c, "kube", remote)
	if err != nil {
		return nil, refused(http.StatusForbidden, "Forbidden", "warden: "+kubeReason(err))
	}
	v, ok := s.kube.sessions.Load(id)
	if !ok && via == "" && s.peers != nil {
		return s.joinKubePeers(ctx, c, cur, remote, id, mode)
	}
	if !ok {
		return nil, refused(http.StatusNotFound, "NotFound", fmt.Sprintf("warden: no live kubernetes session %.64q on this proxy (see: warden sessions ls)", id))
	}
	ks := v.(*kubeSession)
	joinFields := func() map[string]any {
		f := map[string]any{"mode": mode, "owner": ks.user, "kind": ks.kind, "recorded_by": "proxy"}
		if via != "" {
			f["via_proxy"] = via
		}
		return f
	}
	refuse := func(msg string) error {
		ev := audit.Event{Event: audit.SessionJoin, User: cur.User, SessionID: ks.id, RemoteAddr: remote, Error: msg, Fields: joinFields()}
		_ = ks.emit(ev)
		return refused(http.StatusForbidden, "Forbidden", "warden: "+msg)
	}
	if !ks.tty {
		return nil, refuse("the session runs without a terminal; only sessions with one can be joined")
	}
	sub := cur.LockSubject()
	sub.Node = ks.cluster
	if err := s.cfg.Directory.CheckLock(sub); err != nil {
		return nil, refuse(kubeReason(err))
	}
	res := policy.KubeResource{Verb: "get", Kind: "pods", Namespace: ks.namespace, Name: ks.pod}
	if _, err := s.cfg.Directory.AuthorizeKube(ctx, cur, ks.clusterInfo, res); err != nil {
		return nil, refuse("joining a session in pod " + ks.namespace + "/" + ks.pod + " needs get on the pod: " + kubeReason(err))
	}
	rl, ok := s.cfg.Directory.(kubeRoleLister)
	if !ok {
		return nil, refuse("this proxy cannot decide joins")
	}
	all, err := rl.ListRoles(ctx, ks.agent)
	if err != nil {
		return nil, refuse("roles: " + err.Error())
	}
	joiner := slices.DeleteFunc(all, func(role *policy.Role) bool { return role == nil || !slices.Contains(cur.Roles, role.Metadata.Name) })
	if !policy.CanJoin(joiner, ks.ownerRoles, mode) {
		return nil, refuse(fmt.Sprintf("your roles do not allow joining the sessions of %s as %s (join_sessions)", ks.user, mode))
	}

	pctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	// Live like a request: a lock on the joiner, or the pod no longer
	// visible to them, ends the participation.
	live := &kubeLive{sub: sub, cancel: cancel, caller: c, remote: remote, cluster: ks.clusterInfo, res: res}
	s.kube.mu.Lock()
	s.kube.live[live] = struct{}{}
	s.kube.mu.Unlock()
	unlive := func() {
		cancel(nil)
		s.kube.mu.Lock()
		delete(s.kube.live, live)
		s.kube.mu.Unlock()
	}
	if err := s.cfg.Directory.CheckLock(sub); err != nil {
		unlive()
		return nil, refuse(kubeReason(err))
	}
	o := ks.addObserver()
	if o == nil {
		unlive()
		return nil, refused(http.StatusNotFound, "NotFound", "warden: the session has ended")
	}
	if err := ks.emit(audit.Event{Event: audit.SessionJoin, User: cur.User, SessionID: ks.id, RemoteAddr: remote, Success: true, Fields: joinFields()}); err != nil {
		ks.removeObserver(o)
		unlive()
		return nil, refused(http.StatusServiceUnavailable, "ServiceUnavailable", "warden: the join could not be audited: "+err.Error())
	}
	ks.notice(policy.JoinNotice(cur.User, mode, true))
	return &KubeParticipant{s: s, ks: ks, o: o, user: cur.User, remote: remote, mode: mode, ctx: pctx, cancel: cancel, live: live,
		why: "left", via: via}, nil
}

// notice tells the session's owner (and everyone in it) on the terminal
// that someone joined or left: written into the session's stdout in the
// client's protocol, between the API server's frames
// (kubestream.Tap.Notice), and so recorded and seen by observers too.
// Best effort: a session whose stdout has ended is not told.
func (k *kubeSession) notice(msg string) {
	k.mu.Lock()
	tap, ended := k.tap, k.ended
	k.mu.Unlock()
	if tap == nil || ended {
		return
	}
	if err := tap.Notice([]byte(msg)); err != nil {
		k.s.log.Debug("kube session notice not written", "session", k.id, "err", err)
	}
}

// Mode is observer or peer.
func (p *KubeParticipant) Mode() string { return p.mode }

func (p *KubeParticipant) setWhy(why string) {
	p.mu.Lock()
	p.why = why
	p.mu.Unlock()
}

// Next returns the session's next output. Its error says why the
// participation ended: ErrKubeSessionEnded, a lock's message, falling
// behind, or ctx's end.
func (p *KubeParticipant) Next(ctx context.Context) ([]byte, error) {
	if p.peer != nil {
		return p.peer.next(ctx)
	}
	select {
	case b, ok := <-p.o.out:
		if !ok {
			p.setWhy("the session ended")
			return nil, ErrKubeSessionEnded
		}
		return b, nil
	case <-p.o.gone:
		p.setWhy("fell too far behind the session's output")
		return nil, errors.New("you fell too far behind the session's output")
	case <-p.ctx.Done():
		why := "left"
		if cause := context.Cause(p.ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			why = cause.Error()
		}
		p.setWhy(why)
		return nil, errors.New(why)
	case <-ctx.Done():
		p.setWhy("left")
		return nil, ctx.Err()
	}
}

// Input types p into the session (peers only): into its stdin, and its
// recording when the roles record input.
func (p *KubeParticipant) Input(b []byte) error {
	if p.mode != policy.JoinPeer {
		return errors.New("an observer cannot type into the session")
	}
	if p.peer != nil {
		return p.peer.input(b)
	}
	if err := p.ctx.Err(); err != nil {
		return context.Cause(p.ctx)
	}
	p.ks.mu.Lock()
	tap, ended := p.ks.tap, p.ks.ended
	p.ks.mu.Unlock()
	if tap == nil || ended {
		return ErrKubeSessionEnded
	}
	return tap.Inject(b)
}

// Leave ends the participation (audited as session.leave, with why it
// ended). It may be called more than once.
func (p *KubeParticipant) Leave() {
	p.once.Do(func() {
		if p.peer != nil {
			// The peer where the session runs audits the leave.
			p.peer.leave()
			p.cancel(nil)
			return
		}
		p.ks.removeObserver(p.o)
		p.cancel(nil)
		p.s.kube.mu.Lock()
		delete(p.s.kube.live, p.live)
		p.s.kube.mu.Unlock()
		p.mu.Lock()
		why := p.why
		p.mu.Unlock()
		leave := map[string]any{"mode": p.mode, "owner": p.ks.user, "kind": p.ks.kind, "recorded_by": "proxy", "reason": why}
		if p.via != "" {
			leave["via_proxy"] = p.via
		}
		_ = p.ks.emit(audit.Event{Event: audit.SessionLeave, User: p.user, SessionID: p.ks.id, RemoteAddr: p.remote, Success: true, Fields: leave})
		p.ks.notice(policy.JoinNotice(p.user, p.mode, false))
	})
}

// KubeSessionsHandler serves joins of kube sessions under
// KubeSessionsPrefix.
func (s *Server) KubeSessionsHandler() http.Handler { return http.HandlerFunc(s.serveKubeJoin) }

// maxKubeJoinInput bounds one message of a peer's input.
const maxKubeJoinInput = 64 << 10

func (s *Server) serveKubeJoin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		kubeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "warden: use GET")
		return
	}
	id := strings.TrimPrefix(r.URL.Path, KubeSessionsPrefix)
	mode := r.URL.Query().Get("mode")
	ws := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	if mode == policy.JoinPeer && !ws {
		kubeStatus(w, http.StatusBadRequest, "BadRequest", "warden: joining as peer needs a WebSocket (warden join --mode peer)")
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		kubeStatus(w, http.StatusUnauthorized, "Unauthorized", "warden: a Warden client certificate is required")
		return
	}
	c, err := auth.CallerFromTLS(r.TLS.PeerCertificates[0])
	if err != nil || c.Kind != auth.KindUser {
		kubeStatus(w, http.StatusUnauthorized, "Unauthorized", "warden: only user certificates join sessions")
		return
	}
	p, err := s.JoinKube(r.Context(), c, r.RemoteAddr, id, mode)
	if err != nil {
		var je *KubeJoinError
		if errors.As(err, &je) {
			kubeStatus(w, je.Code, je.Reason, je.Msg)
		} else {
			kubeStatus(w, http.StatusInternalServerError, "InternalError", "warden: "+err.Error())
		}
		return
	}
	defer p.Leave()
	if ws {
		s.serveKubeJoinSocket(w, r, p)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for {
		b, err := p.Next(r.Context())
		if err != nil {
			if r.Context().Err() == nil {
				_, _ = w.Write([]byte("\r\nwarden: " + err.Error() + "\r\n"))
			}
			return
		}
		if _, err := w.Write(b); err != nil {
			p.setWhy("left")
			return
		}
		_ = rc.Flush()
	}
}

// serveKubeJoinSocket carries a participation over a WebSocket: the
// session's output as binary messages; a peer's binary messages are its
// input (an observer's end the socket). Why it ended is the last output.
func (s *Server) serveKubeJoinSocket(w http.ResponseWriter, r *http.Request, p *KubeParticipant) {
	// The client is warden join, not a browser: no Origin to check, the
	// client certificate authenticates it.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(maxKubeJoinInput)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		defer cancel()
		for {
			typ, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			if typ != websocket.MessageBinary || p.Mode() != policy.JoinPeer {
				_ = conn.Close(websocket.StatusPolicyViolation, "an observer cannot type into the session")
				return
			}
			if err := p.Input(b); err != nil {
				_ = conn.Close(websocket.StatusNormalClosure, closeReason("warden: "+err.Error()))
				return
			}
		}
	}()
	for {
		b, err := p.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				p.setWhy("left")
				return
			}
			// The reason in full as output (a close reason holds 123
			// bytes), then the close.
			_ = conn.Write(ctx, websocket.MessageBinary, []byte("\r\nwarden: "+err.Error()+"\r\n"))
			_ = conn.Close(websocket.StatusNormalClosure, "")
			return
		}
		if err := conn.Write(ctx, websocket.MessageBinary, b); err != nil {
			p.setWhy("left")
			return
		}
	}
}

// closeReason fits a reason into a WebSocket close frame (123 bytes).
func closeReason(s string) string {
	if len(s) <= 123 {
		return s
	}
	return strings.ToValidUTF8(s[:123], "")
}
