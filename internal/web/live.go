package web

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"

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
// given (node=, as `warden join --node`), or looked up in the live list.
func (h *Handler) joinTarget(r *http.Request, c auth.Caller) (id, mode, node string, err error) {
	id, mode, node = r.PathValue("id"), r.URL.Query().Get("mode"), r.URL.Query().Get("node")
	if mode == "" {
		mode = policy.JoinObserver
	}
	if !sessionIDRe.MatchString(id) {
		return "", "", "", fmt.Errorf("%w: invalid session id", auth.ErrBadRequest)
	}
	if mode != policy.JoinObserver && mode != policy.JoinPeer {
		return "", "", "", fmt.Errorf("%w: mode must be %s or %s", auth.ErrBadRequest, policy.JoinObserver, policy.JoinPeer)
	}
	if node != "" {
		return id, mode, node, nil
	}
	list, err := h.auth.ListSessions(r.Context(), c)
	if err != nil {
		return "", "", "", fmt.Errorf("cannot look up session %s (%s); give its node", id, h.message(err))
	}
	for _, ls := range list {
		if ls.ID != id {
			continue
		}
		if !ls.TTY && ls.Kind != "" {
			return "", "", "", fmt.Errorf("%w: session %s runs without a terminal; only sessions with one can be joined", auth.ErrBadRequest, id)
		}
		if ls.Kind == "kube-exec" || ls.Kind == "kube-attach" {
			return "", "", "", fmt.Errorf("%w: session %s is a kubernetes %s through the proxy: watch it with warden join %s (observer); the web UI does not join kubernetes sessions yet", auth.ErrBadRequest, id, ls.Kind, id)
		}
		return id, mode, ls.NodeID, nil
	}
	return "", "", "", fmt.Errorf("%w: no live session %s", storage.ErrNotFound, id)
}

// joinPage shows a terminal joined to a live session.
func (h *Handler) joinPage(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	id, mode, node, err := h.joinTarget(r, c)
	if err != nil {
		h.renderError(w, r, s, statusOf(err), h.message(err))
		return
	}
	q := url.Values{"mode": {mode}, "node": {node}}
	h.renderTerminal(w, h.view(s, "Session "+id, "sessions", terminalData{Title: "session " + id + " (" + mode + ")", GraceMS: h.terms.grace.Milliseconds(),
		WS: Prefix + "sessions/" + url.PathEscape(id) + "/ws?" + q.Encode(), ReadOnly: mode == policy.JoinObserver}))
}

// joinSocket joins a live session as `warden join` does: a connection to
// the session's node with the user's join-only principal, through the
// proxy, and "join <id> <mode>". The node decides (join_sessions in the
// joiner's roles, the owner's roles), tells the session's owner, and
// audits session.join and session.leave. An observer's keys go nowhere.
func (h *Handler) joinSocket(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	id, mode, node, err := h.joinTarget(r, c)
	if err != nil {
		http.Error(w, h.message(err), statusOf(err))
		return
	}
	h.bridge(w, r, s, c, node, ca.InternalPrincipalPrefix+c.User, "join "+id+" "+mode, mode == policy.JoinPeer)
}
