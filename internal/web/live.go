package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/coder/websocket"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
)

type liveData struct {
	Sessions []auth.LiveSession
}

// liveSessions lists the sessions in progress (auth.Server.ListSessions,
// as `warden sessions ls`): who is where, with join links.
func (h *Handler) liveSessions(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	v := h.view(s, "Live sessions", "sessions", nil)
	list, err := h.auth.ListSessions(r.Context(), c)
	if err != nil {
		v.Error = h.message(err)
	}
	if id := r.URL.Query().Get("terminated"); sessionIDRe.MatchString(id) {
		v.Notice = "Session " + id + " is being terminated: its node ends it as the lock reaches it."
	}
	v.Data = liveData{Sessions: list}
	h.render(w, http.StatusOK, "sessions", v)
}

var sessionIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// joinTarget checks the join's parameters and finds the session's node:
// given (node=, as `warden join --node`), or looked up in the live list;
// kube is a kubectl exec or attach session, which lives at the proxy
// (node is then empty).
func (h *Handler) joinTarget(r *http.Request, c auth.Caller) (id, mode, node string, kube bool, err error) {
	id, mode, node = r.PathValue("id"), r.URL.Query().Get("mode"), r.URL.Query().Get("node")
	if mode == "" {
		mode = policy.JoinObserver
	}
	if !sessionIDRe.MatchString(id) {
		return "", "", "", false, fmt.Errorf("%w: invalid session id", auth.ErrBadRequest)
	}
	if mode != policy.JoinObserver && mode != policy.JoinPeer {
		return "", "", "", false, fmt.Errorf("%w: mode must be %s or %s", auth.ErrBadRequest, policy.JoinObserver, policy.JoinPeer)
	}
	if node != "" {
		return id, mode, node, false, nil
	}
	list, err := h.auth.ListSessions(r.Context(), c)
	if err != nil {
		return "", "", "", false, fmt.Errorf("cannot look up session %s (%s); give its node", id, h.message(err))
	}
	for _, ls := range list {
		if ls.ID != id {
			continue
		}
		if !ls.TTY && ls.Kind != "" {
			return "", "", "", false, fmt.Errorf("%w: session %s runs without a terminal; only sessions with one can be joined", auth.ErrBadRequest, id)
		}
		if isKubeSession(ls.Kind) {
			return id, mode, "", true, nil
		}
		return id, mode, ls.NodeID, false, nil
	}
	return "", "", "", false, fmt.Errorf("%w: no live session %s", storage.ErrNotFound, id)
}

// joinPage shows a terminal joined to a live session.
func (h *Handler) joinPage(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	id, mode, node, kube, err := h.joinTarget(r, c)
	if err != nil {
		h.renderError(w, r, s, statusOf(err), h.message(err))
		return
	}
	q := url.Values{"mode": {mode}, "node": {node}}
	if kube {
		q.Del("node") // the socket looks the session up again
	}
	h.renderTerminal(w, h.view(s, "Session "+id, "sessions", terminalData{Title: "session " + id + " (" + mode + ")", GraceMS: h.terms.grace.Milliseconds(),
		WS: Prefix + "sessions/" + url.PathEscape(id) + "/ws?" + q.Encode(), ReadOnly: mode == policy.JoinObserver}))
}

// joinSocket joins a live session as `warden join` does: a connection to
// the session's node with the user's join-only principal, through the
// proxy, and "join <id> <mode>". The node decides (join_sessions in the
// joiner's roles, the owner's roles), tells the session's owner, and
// audits session.join and session.leave. An observer's keys go nowhere.
func (h *Handler) joinSocket(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	id, mode, node, kube, err := h.joinTarget(r, c)
	if err != nil {
		http.Error(w, h.message(err), statusOf(err))
		return
	}
	if kube {
		h.kubeJoinSocket(w, r, s, id, mode)
		return
	}
	h.bridge(w, r, s, c, node, ca.InternalPrincipalPrefix+c.User, "join "+id+" "+mode, mode == policy.JoinPeer)
}

// isKubeSession: a kubectl exec or attach session (it lives at the
// proxy, not on a node).
func isKubeSession(kind string) bool { return kind == "kube-exec" || kind == "kube-attach" }

// KubeParticipant is a participation in a live kube session, as the
// proxy gives it (proxy.KubeParticipant): the session's output, a peer's
// input, the leave.
type KubeParticipant interface {
	Next(ctx context.Context) ([]byte, error)
	Input(p []byte) error
	Leave()
}

// kubeJoinSocket joins a kube session (kubectl exec or attach, which
// lives at the proxy) over the page's WebSocket, as warden join does:
// the proxy decides (Config.JoinKube: the joiner current and not locked,
// allowed to get the pod, join_sessions in the mode), audits
// session.join and session.leave, and ends the participation on a lock.
// The page speaks the terminal's protocol; there is nothing to resume
// (a dropped socket leaves the session).
func (h *Handler) kubeJoinSocket(w http.ResponseWriter, r *http.Request, s *session, id, mode string) {
	ws, err := websocket.Accept(w, r, nil) // refuses another Origin
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(64 << 10)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	hctx, hcancel := context.WithTimeout(ctx, helloTimeout)
	_, _, err = ws.Read(hctx) // the size: the owner's terminal keeps its own
	hcancel()
	if err != nil {
		return
	}
	if h.joinKube == nil {
		refuseSocket(ws, "this server does not join kubernetes sessions (the proxy runs elsewhere)")
		return
	}
	p, err := h.joinKube(ctx, s.caller, remoteIP(r), id, mode)
	if err != nil {
		refuseSocket(ws, strings.TrimPrefix(err.Error(), "warden: "))
		return
	}
	defer p.Leave()
	// A token the page shows as connected; it resumes nothing.
	hello, _ := json.Marshal(serverMsg{Token: "kube-" + randomToken()})
	if err := ws.Write(ctx, websocket.MessageText, hello); err != nil {
		return
	}
	go func() {
		defer cancel()
		for {
			typ, b, err := ws.Read(ctx)
			if err != nil {
				return
			}
			if typ != websocket.MessageBinary || mode != policy.JoinPeer {
				continue // sizes, acknowledgements; an observer's keys go nowhere
			}
			if err := p.Input(b); err != nil {
				refuseSocket(ws, strings.TrimPrefix(err.Error(), "warden: "))
				return
			}
		}
	}()
	for {
		b, err := p.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				_ = ws.Write(ctx, websocket.MessageBinary, []byte("\r\nwarden: "+err.Error()+"\r\n"))
				_ = ws.Close(websocket.StatusNormalClosure, truncate(err.Error(), 120))
			}
			return
		}
		if err := ws.Write(ctx, websocket.MessageBinary, b); err != nil {
			return
		}
	}
}
