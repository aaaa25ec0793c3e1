package web

import (
	"fmt"
	"net/http"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
)

// sessionLockTTL is how long the lock that ends one session stays: its
// node ends the session as soon as the lock reaches it (at once when it is
// connected, at its reconnection otherwise); the session id is never
// reused, so the lock needs no longer.
const sessionLockTTL = time.Hour

// terminateSession ends a live session: a lock on its id
// (auth.Server.CreateLock, as `warden lock --session <id>`), so the rule
// is the lock rule, the audit event lock.created, and the node ends the
// session as a lock ends any: the user sees the message, session.end
// records why.
func (h *Handler) terminateSession(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	id := r.PathValue("id")
	if !sessionIDRe.MatchString(id) {
		h.renderError(w, r, s, http.StatusBadRequest, "invalid session id")
		return
	}
	msg := "session terminated by " + c.User
	if m := r.PostFormValue("message"); m != "" {
		msg += ": " + m
	}
	_, err := h.auth.CreateLock(r.Context(), c, auth.CreateLockRequest{Target: lock.Target{Session: id}, Message: msg,
		TTL: sessionLockTTL})
	if err != nil {
		h.renderError(w, r, s, statusOf(err), h.message(err))
		return
	}
	http.Redirect(w, r, fmt.Sprintf("%ssessions?terminated=%s", Prefix, id), http.StatusSeeOther)
}
