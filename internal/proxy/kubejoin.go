package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/policy"
)

// Joining a kube session as an observer: `warden join ID` on a session
// of kind kube-exec or kube-attach asks the proxy, where the session
// lives, at KubeSessionsPrefix+ID with the user's Warden client
// certificate, and receives the session's terminal output from then on
// (a plain HTTP response body, flushed as it comes). The joiner must be
// current (auth.CurrentCaller), not locked, allowed to get the pod
// (policy.DecideKube: one may watch what one may see), and their roles'
// join_sessions must allow the owner's roles in observer mode
// (policy.CanJoin, as nodes decide). Joins and leaves are audited as a
// node's (session.join, session.leave), which lists the participants in
// sessions ls. A lock on the joiner ends their view at once; one who
// falls behind the output is dropped rather than slowing the session.
// Peer mode (typing into the session) is not offered.

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

// KubeSessionsHandler serves joins of kube sessions under
// KubeSessionsPrefix.
func (s *Server) KubeSessionsHandler() http.Handler { return http.HandlerFunc(s.serveKubeJoin) }

func (s *Server) serveKubeJoin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		kubeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "warden: use GET")
		return
	}
	id := strings.TrimPrefix(r.URL.Path, KubeSessionsPrefix)
	if mode := r.URL.Query().Get("mode"); mode != "" && mode != policy.JoinObserver {
		kubeStatus(w, http.StatusBadRequest, "BadRequest", "warden: kubernetes sessions can be joined as observer only")
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
	cur, err := s.cfg.Directory.CurrentCaller(r.Context(), c, "kube", r.RemoteAddr)
	if err != nil {
		kubeStatus(w, http.StatusForbidden, "Forbidden", "warden: "+kubeReason(err))
		return
	}
	v, ok := s.kube.sessions.Load(id)
	if !ok {
		kubeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("warden: no live kubernetes session %.64q on this proxy (see: warden sessions ls)", id))
		return
	}
	ks := v.(*kubeSession)
	refuse := func(msg string) {
		ev := audit.Event{Event: audit.SessionJoin, User: cur.User, SessionID: ks.id, RemoteAddr: r.RemoteAddr, Error: msg,
			Fields: map[string]any{"mode": policy.JoinObserver, "owner": ks.user, "kind": ks.kind, "recorded_by": "proxy"}}
		_ = ks.emit(ev)
		kubeStatus(w, http.StatusForbidden, "Forbidden", "warden: "+msg)
	}
	if !ks.tty {
		refuse("the session runs without a terminal; only sessions with one can be joined")
		return
	}
	sub := cur.LockSubject()
	sub.Node = ks.cluster
	if err := s.cfg.Directory.CheckLock(sub); err != nil {
		refuse(kubeReason(err))
		return
	}
	res := policy.KubeResource{Verb: "get", Kind: "pods", Namespace: ks.namespace, Name: ks.pod}
	if _, err := s.cfg.Directory.AuthorizeKube(r.Context(), cur, ks.clusterInfo, res); err != nil {
		refuse("watching a session in pod " + ks.namespace + "/" + ks.pod + " needs get on the pod: " + kubeReason(err))
		return
	}
	rl, ok := s.cfg.Directory.(kubeRoleLister)
	if !ok {
		refuse("this proxy cannot decide joins")
		return
	}
	all, err := rl.ListRoles(r.Context(), ks.agent)
	if err != nil {
		refuse("roles: " + err.Error())
		return
	}
	joiner := slices.DeleteFunc(all, func(role *policy.Role) bool { return role == nil || !slices.Contains(cur.Roles, role.Metadata.Name) })
	if !policy.CanJoin(joiner, ks.ownerRoles, policy.JoinObserver) {
		refuse(fmt.Sprintf("your roles do not allow joining the sessions of %s as observer (join_sessions)", ks.user))
		return
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	// Live like a request: a lock on the joiner, or the pod no longer
	// visible to them, ends the view.
	live := &kubeLive{sub: sub, cancel: cancel, caller: c, remote: r.RemoteAddr, cluster: ks.clusterInfo, res: res}
	s.kube.mu.Lock()
	s.kube.live[live] = struct{}{}
	s.kube.mu.Unlock()
	defer func() {
		s.kube.mu.Lock()
		delete(s.kube.live, live)
		s.kube.mu.Unlock()
	}()
	if err := s.cfg.Directory.CheckLock(sub); err != nil {
		refuse(kubeReason(err))
		return
	}
	o := ks.addObserver()
	if o == nil {
		kubeStatus(w, http.StatusNotFound, "NotFound", "warden: the session has ended")
		return
	}
	fields := map[string]any{"mode": policy.JoinObserver, "owner": ks.user, "kind": ks.kind, "recorded_by": "proxy"}
	if err := ks.emit(audit.Event{Event: audit.SessionJoin, User: cur.User, SessionID: ks.id, RemoteAddr: r.RemoteAddr, Success: true, Fields: fields}); err != nil {
		ks.removeObserver(o)
		kubeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "warden: the join could not be audited: "+err.Error())
		return
	}
	why := "the session ended"
	defer func() {
		ks.removeObserver(o)
		leave := map[string]any{"mode": policy.JoinObserver, "owner": ks.user, "kind": ks.kind, "recorded_by": "proxy", "reason": why}
		_ = ks.emit(audit.Event{Event: audit.SessionLeave, User: cur.User, SessionID: ks.id, RemoteAddr: r.RemoteAddr, Success: true, Fields: leave})
	}()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for {
		select {
		case p, ok := <-o.out:
			if !ok {
				_, _ = w.Write([]byte("\r\nwarden: the session ended\r\n"))
				return
			}
			if _, err := w.Write(p); err != nil {
				why = "left"
				return
			}
			_ = rc.Flush()
		case <-o.gone:
			why = "fell too far behind the session's output"
			_, _ = w.Write([]byte("\r\nwarden: you fell too far behind the session's output\r\n"))
			return
		case <-ctx.Done():
			why = "left"
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				why = cause.Error()
				_, _ = w.Write([]byte("\r\nwarden: " + why + "\r\n"))
			}
			return
		}
	}
}
