// Package api exposes the auth service over HTTPS with JSON bodies, and is
// the one place where errors become HTTP status codes. Callers authenticate
// with X.509 client certificates issued by the cluster's TLS CA; a few
// endpoints (ping, login, signup, node join) are open and rate-bounded by
// their own checks.
package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage"
)

// Version is the API/agent version string reported by ping.
var Version = "0.1.0-dev"

// maxBody bounds request bodies (a recording chunk is at most 1 MiB).
const maxBody = 2 << 20

// Handler serves the API.
type Handler struct {
	auth *auth.Server
	log  *slog.Logger
	mux  *http.ServeMux
}

// NewHandler returns the API handler for an auth server.
func NewHandler(a *auth.Server, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{auth: a, log: log, mux: http.NewServeMux()}
	h.routes()
	return h
}

func (h *Handler) routes() {
	m := h.mux
	m.HandleFunc("GET /v1/ping", h.ping)
	m.HandleFunc("POST /v1/login", h.login)
	m.HandleFunc("POST /v1/signup/begin", h.signupBegin)
	m.HandleFunc("POST /v1/signup/complete", h.signupComplete)
	m.HandleFunc("POST /v1/nodes/join", h.nodeJoin)

	m.HandleFunc("GET /v1/whoami", h.authed(h.whoami))
	m.HandleFunc("POST /v1/nodes/renew", h.authed(h.nodeRenew))
	m.HandleFunc("GET /v1/nodes", h.authed(h.nodesList))
	m.HandleFunc("POST /v1/events", h.authed(h.eventsEmit))
	m.HandleFunc("GET /v1/audit", h.authed(h.auditSearch))
	m.HandleFunc("GET /v1/audit/verify", h.authed(h.auditVerify))
	m.HandleFunc("GET /v1/audit/stream", h.authed(h.auditStream))
	m.HandleFunc("GET /v1/watch", h.authed(h.watch))
	m.HandleFunc("GET /v1/sessions", h.authed(h.sessionsList))
	m.HandleFunc("PUT /v1/recordings/{id}", h.authed(h.recordingAppend))
	m.HandleFunc("POST /v1/recordings/{id}/complete", h.authed(h.recordingComplete))
	m.HandleFunc("GET /v1/recordings", h.authed(h.recordingsList))
	m.HandleFunc("GET /v1/recordings/search", h.authed(h.recordingsSearch))
	m.HandleFunc("GET /v1/recordings/{id}", h.authed(h.recordingGet))
	m.HandleFunc("POST /v1/access_requests", h.authed(h.requestCreate))
	m.HandleFunc("GET /v1/access_requests", h.authed(h.requestsList))
	m.HandleFunc("GET /v1/access_requests/suggest", h.authed(h.requestSuggest))
	m.HandleFunc("GET /v1/access_requests/{id}", h.authed(h.requestGet))
	m.HandleFunc("POST /v1/access_requests/{id}/review", h.authed(h.requestReview))
	m.HandleFunc("POST /v1/access_requests/{id}/revoke", h.authed(h.requestRevoke))
	m.HandleFunc("POST /v1/access_requests/{id}/use", h.authed(h.requestUse))
	m.HandleFunc("POST /v1/locks", h.authed(h.lockCreate))
	m.HandleFunc("GET /v1/locks", h.authed(h.locksList))
	m.HandleFunc("DELETE /v1/locks/{id}", h.authed(h.lockDelete))
	m.HandleFunc("POST /v1/users", h.authed(h.userCreate))
	m.HandleFunc("GET /v1/users", h.authed(h.usersList))
	m.HandleFunc("DELETE /v1/users/{name}", h.authed(h.userDelete))
	m.HandleFunc("POST /v1/users/{name}/reset", h.authed(h.userReset))
	m.HandleFunc("PUT /v1/roles/{name}", h.authed(h.roleUpsert))
	m.HandleFunc("GET /v1/roles", h.authed(h.rolesList))
	m.HandleFunc("GET /v1/roles/{name}", h.authed(h.roleGet))
	m.HandleFunc("DELETE /v1/roles/{name}", h.authed(h.roleDelete))
	m.HandleFunc("POST /v1/tokens", h.authed(h.tokenCreate))
	m.HandleFunc("GET /v1/tokens", h.authed(h.tokensList))
	m.HandleFunc("DELETE /v1/tokens/{id}", h.authed(h.tokenDelete))
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

type callerHandler func(w http.ResponseWriter, r *http.Request, c auth.Caller)

// authed requires a verified client certificate and turns it into a Caller.
func (h *Handler) authed(next callerHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			h.fail(w, fmt.Errorf("%w: this call needs a client certificate: run warden login", auth.ErrUnauthenticated))
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		id, err := ca.IdentityFromTLSCert(leaf)
		if err != nil {
			h.fail(w, fmt.Errorf("%w: bad client certificate", auth.ErrUnauthenticated))
			return
		}
		c := auth.Caller{Kind: id.Kind, User: id.Username, NodeID: id.NodeID, Roles: id.Roles, Traits: id.Traits}
		// Locked users are refused on every call, with the lock's message.
		if err := h.auth.CheckCaller(c); err != nil {
			h.fail(w, err)
			return
		}
		next(w, r, c)
	}
}

// Error is the JSON error body.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	// Length is the stored length of a recording, on an offset conflict.
	Length int64 `json:"length,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Is lets clients use errors.Is with the storage and auth sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case storage.ErrNotFound:
		return e.Status == http.StatusNotFound
	case storage.ErrAlreadyExists, storage.ErrCompareFailed:
		return e.Status == http.StatusConflict
	case auth.ErrUnauthenticated:
		return e.Status == http.StatusUnauthorized
	case auth.ErrAccessDenied:
		return e.Status == http.StatusForbidden
	case auth.ErrBadRequest:
		return e.Status == http.StatusBadRequest
	}
	return false
}

func statusOf(err error) int {
	var de *policy.DeniedError
	var mbe *http.MaxBytesError
	var oe *recording.OffsetError
	switch {
	case errors.As(err, &oe):
		return http.StatusConflict
	case errors.Is(err, auth.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, auth.ErrAccessDenied), errors.As(err, &de):
		return http.StatusForbidden
	case errors.Is(err, auth.ErrBadRequest):
		return http.StatusBadRequest
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, storage.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, storage.ErrAlreadyExists), errors.Is(err, storage.ErrCompareFailed):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func (h *Handler) fail(w http.ResponseWriter, err error) {
	st := statusOf(err)
	msg := err.Error()
	var oe *recording.OffsetError
	if errors.As(err, &oe) {
		writeJSON(w, st, Error{Message: msg, Length: oe.Have})
		return
	}
	if st == http.StatusInternalServerError {
		h.log.Error("api internal error", "err", err)
		msg = "internal error (see the auth service log)"
	}
	writeJSON(w, st, Error{Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: invalid JSON body: %v", auth.ErrBadRequest, err)
	}
	return nil
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// PingResponse describes the cluster to an unauthenticated client.
type PingResponse struct {
	Cluster string `json:"cluster"`
	Version string `json:"version"`
	// TLSCAFingerprint is "sha256:<hex>" of the TLS CA certificate, shown to
	// users on first login so they can check they reached the right cluster.
	TLSCAFingerprint string `json:"tls_ca_fingerprint"`
	TLSCA            string `json:"tls_ca"`
}

func (h *Handler) ping(w http.ResponseWriter, r *http.Request) {
	a := h.auth.Authority()
	writeJSON(w, http.StatusOK, PingResponse{Cluster: h.auth.ClusterName(), Version: Version,
		TLSCAFingerprint: Fingerprint(a.TLSCACert().Raw), TLSCA: string(a.TLSCAPEM())})
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	var req auth.LoginRequest
	if err := decode(r, &req); err != nil {
		h.fail(w, err)
		return
	}
	req.RemoteAddr = remoteIP(r)
	resp, err := h.auth.Login(r.Context(), req)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

type signupRequest struct {
	Token    string `json:"token"`
	Password string `json:"password,omitempty"`
	OTP      string `json:"otp,omitempty"`
}

func (h *Handler) signupBegin(w http.ResponseWriter, r *http.Request) {
	var req signupRequest
	if err := decode(r, &req); err != nil {
		h.fail(w, err)
		return
	}
	ch, err := h.auth.BeginSignup(r.Context(), req.Token)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

func (h *Handler) signupComplete(w http.ResponseWriter, r *http.Request) {
	var req signupRequest
	if err := decode(r, &req); err != nil {
		h.fail(w, err)
		return
	}
	if err := h.auth.CompleteSignup(r.Context(), req.Token, req.Password, req.OTP); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (h *Handler) nodeJoin(w http.ResponseWriter, r *http.Request) {
	var req auth.JoinRequest
	if err := decode(r, &req); err != nil {
		h.fail(w, err)
		return
	}
	req.RemoteAddr = remoteIP(r)
	resp, err := h.auth.JoinNode(r.Context(), req)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// WhoAmI describes the caller.
type WhoAmI struct {
	Kind   string              `json:"kind"`
	User   string              `json:"user"`
	NodeID string              `json:"node_id,omitempty"`
	Roles  []string            `json:"roles,omitempty"`
	Traits map[string][]string `json:"traits,omitempty"`
}

func (h *Handler) whoami(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	writeJSON(w, http.StatusOK, WhoAmI{Kind: c.Kind, User: c.User, NodeID: c.NodeID, Roles: c.Roles, Traits: c.Traits})
}

type renewRequest struct {
	PublicKey string `json:"public_key"`
}

func (h *Handler) nodeRenew(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var req renewRequest
	if err := decode(r, &req); err != nil {
		h.fail(w, err)
		return
	}
	certs, err := h.auth.RenewNodeCerts(r.Context(), c, req.PublicKey)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, certs)
}

func (h *Handler) nodesList(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	filter := map[string]string{}
	for _, l := range r.URL.Query()["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			h.fail(w, fmt.Errorf("%w: label filter %q must be key=value", auth.ErrBadRequest, l))
			return
		}
		filter[k] = v
	}
	nodes, err := h.auth.ListNodes(r.Context(), c, filter)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, nodes)
}

func (h *Handler) eventsEmit(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var evs []audit.Event
	if err := decode(r, &evs); err != nil {
		h.fail(w, err)
		return
	}
	if err := h.auth.EmitNodeEvents(r.Context(), c, evs); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (h *Handler) auditSearch(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	q, err := parseAuditQuery(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	evs, err := h.auth.SearchAudit(r.Context(), c, q)
	if err != nil {
		h.fail(w, err)
		return
	}
	if evs == nil {
		evs = []audit.Event{}
	}
	writeJSON(w, http.StatusOK, evs)
}

func parseAuditQuery(r *http.Request) (audit.Query, error) {
	v := r.URL.Query()
	q := audit.Query{Type: v.Get("type"), User: v.Get("user"), Node: v.Get("node"), SessionID: v.Get("session"), Text: v.Get("text")}
	var err error
	parseTime := func(name string) time.Time {
		s := v.Get(name)
		if s == "" || err != nil {
			return time.Time{}
		}
		t, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil {
			err = fmt.Errorf("%w: %s must be RFC3339", auth.ErrBadRequest, name)
		}
		return t
	}
	q.Since, q.Until = parseTime("since"), parseTime("until")
	if s := v.Get("limit"); s != "" && err == nil {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 {
			err = fmt.Errorf("%w: limit must be a non-negative number", auth.ErrBadRequest)
		}
	}
	if s := v.Get("after"); s != "" && err == nil {
		if q.AfterSeq, err = strconv.ParseInt(s, 10, 64); err != nil {
			err = fmt.Errorf("%w: after must be a number", auth.ErrBadRequest)
		}
	}
	return q, err
}

// WatchEvent is one line of the watch stream.
type WatchEvent struct {
	Type  string         `json:"type"`           // snapshot | put | delete | keepalive
	Kind  string         `json:"kind,omitempty"` // role | lock (put, delete)
	Roles []*policy.Role `json:"roles,omitempty"`
	Locks []*lock.Lock   `json:"locks,omitempty"`
	Role  *policy.Role   `json:"role,omitempty"`
	Lock  *lock.Lock     `json:"lock,omitempty"`
	Name  string         `json:"name,omitempty"`
}

// WatchKeepalive is how often an idle watch stream carries a keepalive, so
// watchers can tell a quiet stream from a dead one.
const WatchKeepalive = 10 * time.Second

func (h *Handler) watch(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	snap, ch, err := h.auth.Watch(ctx, c)
	if err != nil {
		h.fail(w, err)
		return
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(ev WatchEvent) bool {
		if err := enc.Encode(ev); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	if !send(WatchEvent{Type: "snapshot", Roles: snap.Roles, Locks: snap.Locks}) {
		return
	}
	tick := time.NewTicker(WatchKeepalive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !send(WatchEvent{Type: "keepalive"}) {
				return
			}
		case ev, ok := <-ch:
			if !ok {
				return // the client re-syncs on reconnect
			}
			out, ok := watchEventOf(ev)
			if !ok || !send(out) {
				return
			}
		}
	}
}

func watchEventOf(ev storage.Event) (WatchEvent, bool) {
	key := ev.Item.Key
	var out WatchEvent
	switch {
	case strings.HasPrefix(key, "/roles/"):
		out = WatchEvent{Kind: "role", Name: strings.TrimPrefix(key, "/roles/")}
		if ev.Type == storage.EventPut {
			var role policy.Role
			if json.Unmarshal(ev.Item.Value, &role) != nil {
				return out, false
			}
			out.Role = &role
		}
	case strings.HasPrefix(key, "/locks/"):
		out = WatchEvent{Kind: "lock", Name: strings.TrimPrefix(key, "/locks/")}
		if ev.Type == storage.EventPut {
			var l lock.Lock
			if json.Unmarshal(ev.Item.Value, &l) != nil {
				return out, false
			}
			out.Lock = &l
		}
	default:
		return out, false
	}
	out.Type = "delete"
	if ev.Type == storage.EventPut {
		out.Type = "put"
	}
	return out, true
}

func (h *Handler) lockCreate(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var req auth.CreateLockRequest
	if err := decode(r, &req); err != nil {
		h.fail(w, err)
		return
	}
	res, err := h.auth.CreateLock(r.Context(), c, req)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *Handler) locksList(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	locks, err := h.auth.ListLocks(r.Context(), c)
	if err != nil {
		h.fail(w, err)
		return
	}
	if locks == nil {
		locks = []*lock.Lock{}
	}
	writeJSON(w, http.StatusOK, locks)
}

func (h *Handler) lockDelete(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	if err := h.auth.DeleteLock(r.Context(), c, r.PathValue("id")); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (h *Handler) userCreate(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var req auth.CreateUserRequest
	if err := decode(r, &req); err != nil {
		h.fail(w, err)
		return
	}
	inv, err := h.auth.CreateUser(r.Context(), c, req)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (h *Handler) usersList(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	users, err := h.auth.ListUsers(r.Context(), c)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, users)
}

func (h *Handler) userDelete(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	if err := h.auth.DeleteUser(r.Context(), c, r.PathValue("name")); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (h *Handler) userReset(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	inv, err := h.auth.ResetUser(r.Context(), c, r.PathValue("name"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (h *Handler) roleUpsert(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var role policy.Role
	if err := decode(r, &role); err != nil {
		h.fail(w, err)
		return
	}
	if role.Metadata.Name != r.PathValue("name") {
		h.fail(w, fmt.Errorf("%w: role name in the URL and the body differ", auth.ErrBadRequest))
		return
	}
	if err := h.auth.UpsertRole(r.Context(), c, &role); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (h *Handler) rolesList(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	roles, err := h.auth.ListRoles(r.Context(), c)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, roles)
}

func (h *Handler) roleGet(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	role, err := h.auth.GetRole(r.Context(), c, r.PathValue("name"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, role)
}

func (h *Handler) roleDelete(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	if err := h.auth.DeleteRole(r.Context(), c, r.PathValue("name")); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (h *Handler) tokenCreate(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var req auth.CreateTokenRequest
	if err := decode(r, &req); err != nil {
		h.fail(w, err)
		return
	}
	tok, err := h.auth.CreateToken(r.Context(), c, req)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tok)
}

func (h *Handler) tokensList(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	toks, err := h.auth.ListTokens(r.Context(), c)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toks)
}

func (h *Handler) tokenDelete(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	if err := h.auth.DeleteToken(r.Context(), c, r.PathValue("id")); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (h *Handler) sessionsList(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	sessions, err := h.auth.ListSessions(r.Context(), c)
	if err != nil {
		h.fail(w, err)
		return
	}
	if sessions == nil {
		sessions = []auth.LiveSession{}
	}
	writeJSON(w, http.StatusOK, sessions)
}

func (h *Handler) requestCreate(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var in auth.CreateAccessRequest
	if err := decode(r, &in); err != nil {
		h.fail(w, err)
		return
	}
	req, err := h.auth.CreateAccessRequest(r.Context(), c, in)
	respond(h, w, req, err)
}

func (h *Handler) requestsList(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	reqs, err := h.auth.ListAccessRequests(r.Context(), c)
	if reqs == nil {
		reqs = []*access.Request{}
	}
	respond(h, w, reqs, err)
}

func (h *Handler) requestGet(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	req, err := h.auth.GetAccessRequest(r.Context(), c, r.PathValue("id"))
	respond(h, w, req, err)
}

// ReviewBody reviews an access request.
type ReviewBody struct {
	Approve bool   `json:"approve"`
	Reason  string `json:"reason,omitempty"`
}

func (h *Handler) requestReview(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var in ReviewBody
	if err := decode(r, &in); err != nil {
		h.fail(w, err)
		return
	}
	req, err := h.auth.ReviewAccessRequest(r.Context(), c, r.PathValue("id"), in.Approve, in.Reason)
	respond(h, w, req, err)
}

func (h *Handler) requestRevoke(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var in ReviewBody
	if err := decode(r, &in); err != nil {
		h.fail(w, err)
		return
	}
	req, err := h.auth.RevokeAccessRequest(r.Context(), c, r.PathValue("id"), in.Reason)
	respond(h, w, req, err)
}

func (h *Handler) requestUse(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var in renewRequest
	if err := decode(r, &in); err != nil {
		h.fail(w, err)
		return
	}
	resp, err := h.auth.UseAccessRequest(r.Context(), c, r.PathValue("id"), in.PublicKey, remoteIP(r))
	respond(h, w, resp, err)
}

// Suggestion lists roles the caller could request.
type Suggestion struct {
	Roles []string `json:"roles"`
}

func (h *Handler) requestSuggest(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	roles, err := h.auth.SuggestRoles(r.Context(), c, r.URL.Query().Get("login"), r.URL.Query().Get("node"))
	respond(h, w, Suggestion{Roles: roles}, err)
}

// respond writes v or the error.
func respond[T any](h *Handler, w http.ResponseWriter, v T, err error) {
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// RecordingMetaHeader carries the recording's metadata (base64 JSON).
const RecordingMetaHeader = "X-Warden-Recording-Meta"

// LengthBody reports a recording's stored length.
type LengthBody struct {
	Length int64 `json:"length"`
}

func (h *Handler) recordingAppend(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var meta recording.Meta
	raw, err := base64.StdEncoding.DecodeString(r.Header.Get(RecordingMetaHeader))
	if err != nil || len(raw) > 8<<10 || json.Unmarshal(raw, &meta) != nil {
		h.fail(w, fmt.Errorf("%w: bad %s header", auth.ErrBadRequest, RecordingMetaHeader))
		return
	}
	meta.SessionID = r.PathValue("id")
	offset, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || offset < 0 {
		h.fail(w, fmt.Errorf("%w: offset must be a non-negative number", auth.ErrBadRequest))
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, recording.MaxChunk+1))
	if err != nil {
		h.fail(w, err)
		return
	}
	n, err := h.auth.AppendRecording(r.Context(), c, meta, offset, data)
	respond(h, w, LengthBody{Length: n}, err)
}

// CompleteBody closes a recording.
type CompleteBody struct {
	Length      int64  `json:"length"`
	SHA256      string `json:"sha256"`
	Interrupted bool   `json:"interrupted,omitempty"`
}

func (h *Handler) recordingComplete(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	var in CompleteBody
	if err := decode(r, &in); err != nil {
		h.fail(w, err)
		return
	}
	err := h.auth.CompleteRecording(r.Context(), c, r.PathValue("id"), in.Length, in.SHA256, in.Interrupted)
	respond(h, w, struct{}{}, err)
}

func (h *Handler) recordingsList(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	q := r.URL.Query()
	f := auth.RecordingFilter{User: q.Get("user"), Node: q.Get("node")}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			h.fail(w, fmt.Errorf("%w: since must be RFC3339", auth.ErrBadRequest))
			return
		}
		f.Since = t
	}
	list, err := h.auth.ListRecordings(r.Context(), c, f)
	if list == nil {
		list = []recording.Info{}
	}
	respond(h, w, list, err)
}

func (h *Handler) recordingsSearch(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	res, err := h.auth.SearchRecordings(r.Context(), c, r.URL.Query().Get("text"), limit)
	if res == nil {
		res = []auth.RecordingMatch{}
	}
	respond(h, w, res, err)
}

func (h *Handler) recordingGet(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	rc, info, err := h.auth.OpenRecording(r.Context(), c, r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-asciicast")
	w.Header().Set("X-Warden-Recording-Complete", strconv.FormatBool(info.Complete))
	w.Header().Set("X-Warden-Recording-SHA256", info.SHA256)
	w.Header().Set("Content-Length", strconv.FormatInt(info.Length, 10))
	_, _ = io.CopyN(w, rc, info.Length)
}

func (h *Handler) auditVerify(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	res, err := h.auth.VerifyAudit(r.Context(), c)
	respond(h, w, res, err)
}

// auditStream follows the audit log as JSON lines (for warden audit tail -f
// and SIEM collectors).
func (h *Handler) auditStream(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	after, err := strconv.ParseInt(cmpQuery(r, "after", "0"), 10, 64)
	if err != nil || after < 0 {
		h.fail(w, fmt.Errorf("%w: after must be a non-negative number", auth.ErrBadRequest))
		return
	}
	ch, err := h.auth.SubscribeAudit(r.Context(), c, after)
	if err != nil {
		h.fail(w, err)
		return
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	tick := time.NewTicker(WatchKeepalive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			// An empty line keeps proxies and the client's idle checks happy.
			if _, err := w.Write([]byte("\n")); err != nil {
				return
			}
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if err := enc.Encode(ev); err != nil {
				return
			}
		}
		if fl != nil {
			fl.Flush()
		}
	}
}

func cmpQuery(r *http.Request, key, def string) string {
	if v := r.URL.Query().Get(key); v != "" {
		return v
	}
	return def
}
