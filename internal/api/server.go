// Package api exposes the auth service over HTTPS with JSON bodies, and is
// the one place where errors become HTTP status codes. Callers authenticate
// with X.509 client certificates issued by the cluster's TLS CA; a few
// endpoints (ping, login, signup, node join) are open: login and signup
// throttle failed attempts per client address (auth.Server.Login).
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
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// Version is the API/agent version string reported by ping.
var Version = "0.1.0-dev"

// maxBody bounds request bodies (a recording chunk is at most 1 MiB).
const maxBody = 2 << 20

// maxInventoryBody bounds a proxy's published node inventory (up to
// 20,000 nodes, auth.maxProxyInventory).
const maxInventoryBody = 16 << 20

// Handler serves the API.
type Handler struct {
	auth *auth.Server
	log  *slog.Logger
	mux  *http.ServeMux
	// lastWatch is the last change encoded for watch streams: every
	// watcher sends the same bytes, so a lock reaching a thousand nodes is
	// decoded and encoded once.
	lastWatch atomic.Pointer[encodedWatchEvent]
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

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	limit := int64(maxBody)
	if r.URL.Path == "/v1/proxies/inventory" {
		limit = maxInventoryBody
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	w.Header().Set("Cache-Control", "no-store")
	// Only a proxy speaks for the client it serves (forward.go): the
	// headers from anyone else are refused, not ignored.
	if forwardedHeaders(r) && !fromProxy(r) {
		h.fail(w, fmt.Errorf("%w: only a Warden proxy forwards a client's identity or address", auth.ErrUnauthenticated))
		return
	}
	// A proxy revoked (locked, or its registration gone) is refused,
	// whoever it calls for.
	if fromProxy(r) {
		pc, err := auth.CallerFromTLS(peerCert(r))
		if err == nil {
			_, err = h.auth.CurrentCaller(r.Context(), pc, "api "+r.Method+" "+r.URL.Path, remoteIP(r))
		}
		if err != nil {
			h.fail(w, err)
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

// SecurityHeaders sets, on every response of next, the headers that keep
// browsers from misusing it: HTTPS only from now on for this host (HSTS),
// nothing loaded, run, framed or embedded from it (a strict Content
// Security Policy: the API serves JSON, no page), and no content sniffing.
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

type callerHandler func(w http.ResponseWriter, r *http.Request, c auth.Caller)

// authed requires a verified client certificate and turns it into a Caller.
func (h *Handler) authed(next callerHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		leaf, err := h.clientCert(r)
		if err != nil {
			h.fail(w, err)
			return
		}
		c, err := auth.CallerFromTLS(leaf)
		if err != nil {
			h.fail(w, fmt.Errorf("%w: bad client certificate", auth.ErrUnauthenticated))
			return
		}
		// Every call is checked against the current state, not the
		// certificate's: a removed, reset or locked user, or a revoked
		// request, is refused with a short reason, and authorization uses
		// the user's current roles.
		c, err = h.auth.CurrentCaller(r.Context(), c, "api "+r.Method+" "+r.URL.Path, remoteIP(r))
		if err != nil {
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
	// Code tells apart errors a client acts on that share a status:
	// CodeOffset, CodeRecordingComplete, CodeSessionUnknown.
	Code string `json:"code,omitempty"`
	// EnrolToken is, with CodePasskeyEnrol, the token of a web sign-in
	// refused for want of a passkey (auth.PasskeyEnrolment): given to the
	// proxy whose web UI signs the browser in only (/v1/proxies/web-login).
	EnrolToken string `json:"enrol_token,omitempty"`
}

// Error codes.
const (
	// CodeOffset: a recording chunk is not where the stored recording ends
	// (Length says where it does).
	CodeOffset = "offset"
	// CodeRecordingComplete: the recording is complete and cannot grow.
	CodeRecordingComplete = "recording_complete"
	// CodeSessionUnknown: auth has no record of the node starting the
	// session a recording is uploaded for.
	CodeSessionUnknown = "session_unknown"
	// CodePasskeyEnrol: a web sign-in refused because the cluster
	// requires a passkey and the user has none (EnrolToken).
	CodePasskeyEnrol = "passkey_enrol"
)

// errorCode is the Code for err ("" if none).
func errorCode(err error) string {
	var oe *recording.OffsetError
	switch {
	case errors.As(err, &oe):
		return CodeOffset
	case errors.Is(err, recording.ErrCompleted):
		return CodeRecordingComplete
	case errors.Is(err, recording.ErrUnknownSession):
		return CodeSessionUnknown
	}
	return ""
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
	case auth.ErrThrottled:
		return e.Status == http.StatusTooManyRequests
	case auth.ErrConflict:
		return e.Status == http.StatusConflict
	case recording.ErrCompleted:
		return e.Code == CodeRecordingComplete
	case recording.ErrUnknownSession:
		return e.Code == CodeSessionUnknown
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
	case errors.Is(err, auth.ErrThrottled):
		return http.StatusTooManyRequests
	case errors.Is(err, auth.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, auth.ErrAccessDenied), errors.As(err, &de):
		return http.StatusForbidden
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, auth.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, storage.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, wire.ErrUpstream):
		return http.StatusBadGateway
	case errors.Is(err, storage.ErrAlreadyExists), errors.Is(err, storage.ErrCompareFailed), errors.Is(err, auth.ErrConflict):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func (h *Handler) fail(w http.ResponseWriter, err error) {
	st := statusOf(err)
	msg := err.Error()
	var oe *recording.OffsetError
	if errors.As(err, &oe) {
		writeJSON(w, st, Error{Message: msg, Length: oe.Have, Code: CodeOffset})
		return
	}
	var te *identity.ThrottledError
	if errors.As(err, &te) {
		w.Header().Set("Retry-After", strconv.Itoa(int(te.RetryAfter/time.Second)))
	}
	if errors.Is(err, context.Canceled) {
		// The client went away (or the server is stopping): nothing to fix.
		h.log.Debug("api request canceled", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, Error{Message: "request canceled"})
		return
	}
	if st == http.StatusInternalServerError {
		h.log.Error("api internal error", "err", err)
		msg = "internal error (see the auth service log)"
	}
	writeJSON(w, st, Error{Message: msg, Code: errorCode(err)})
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
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return tooLarge(mbe)
		}
		return fmt.Errorf("%w: invalid JSON body: %v", auth.ErrBadRequest, err)
	}
	return nil
}

// tooLarge is the error for a request body over its limit (413).
func tooLarge(mbe *http.MaxBytesError) error {
	return fmt.Errorf("request body larger than %d bytes: %w", mbe.Limit, mbe)
}

func remoteIP(r *http.Request) string {
	if a := r.Header.Get(HeaderClientAddr); a != "" && fromProxy(r) {
		return a
	}
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
	// UserCA and HostCA are the SSH CAs' public keys (authorized_keys
	// lines): sshd's TrustedUserCAKeys, clients' @cert-authority.
	UserCA string `json:"user_ca,omitempty"`
	HostCA string `json:"host_ca,omitempty"`
}

func (h *Handler) ping(w http.ResponseWriter, r *http.Request) {
	a := h.auth.Authority()
	writeJSON(w, http.StatusOK, PingResponse{Cluster: h.auth.ClusterName(), Version: Version,
		TLSCAFingerprint: Fingerprint(a.TLSCACert().Raw), TLSCA: string(a.TLSCAPEM()),
		UserCA: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(a.UserCAPublicKey()))),
		HostCA: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(a.HostCAPublicKey())))})
}

type renewRequest struct {
	PublicKey string `json:"public_key"`
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
	// RequireSessionMFA is the cluster's auth.require_session_mfa
	// (snapshot only).
	RequireSessionMFA bool `json:"require_session_mfa,omitempty"`
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
	write := func(line []byte) bool {
		if _, err := w.Write(line); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	send := func(ev WatchEvent) bool {
		line, err := json.Marshal(ev)
		return err == nil && write(append(line, '\n'))
	}
	if !send(WatchEvent{Type: "snapshot", Roles: snap.Roles, Locks: snap.Locks, RequireSessionMFA: snap.RequireSessionMFA}) {
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
			line, ok := h.encodeWatchEvent(ev)
			if !ok || !write(line) {
				return
			}
		}
	}
}

// encodedWatchEvent is a change as a watch stream line.
type encodedWatchEvent struct {
	typ  storage.EventType
	key  string
	rev  int64
	line []byte
	ok   bool
}

// encodeWatchEvent returns ev as one JSON line for watch streams, and false
// if it is not for watchers. Every change has its own revision (the
// storage contract), so the line is shared by all watchers.
func (h *Handler) encodeWatchEvent(ev storage.Event) ([]byte, bool) {
	if c := h.lastWatch.Load(); c != nil && c.typ == ev.Type && c.key == ev.Item.Key && c.rev == ev.Item.Revision {
		return c.line, c.ok
	}
	out, ok := watchEventOf(ev)
	var line []byte
	if ok {
		b, err := json.Marshal(out)
		ok = err == nil
		line = append(b, '\n')
	}
	h.lastWatch.Store(&encodedWatchEvent{typ: ev.Type, key: ev.Item.Key, rev: ev.Item.Revision, line: line, ok: ok})
	return line, ok
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
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, recording.MaxChunk))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			err = tooLarge(mbe)
		}
		h.fail(w, err)
		return
	}
	n, err := h.auth.AppendRecording(r.Context(), c, meta, offset, data)
	respond(h, w, LengthBody{Length: n}, err)
}

// RecordingCheckTrailer ends a recording's stream with the outcome of its
// check: RecordingCheckOK, RecordingCheckLive (still being recorded:
// nothing to check against yet) or "altered: " and why. A stream
// without it was cut short.
const RecordingCheckTrailer = "X-Warden-Recording-Check"

// Values of RecordingCheckTrailer.
const (
	RecordingCheckOK   = "ok"
	RecordingCheckLive = "live"
)

func (h *Handler) recordingGet(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	rs, err := h.auth.OpenRecording(r.Context(), c, r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	defer rs.Close()
	w.Header().Set("Content-Type", "application/x-asciicast")
	w.Header().Set("X-Warden-Recording-Complete", strconv.FormatBool(rs.Info.Complete))
	w.Header().Set("X-Warden-Recording-SHA256", rs.Info.SHA256)
	// No Content-Length: the check's outcome follows the bytes, as a
	// trailer (the body is chunked on HTTP/1.1).
	w.Header().Set("Trailer", RecordingCheckTrailer)
	w.WriteHeader(http.StatusOK)
	_, err = io.Copy(w, rs)
	var ae *recording.AlteredError
	switch {
	case err == nil && rs.Checked:
		w.Header().Set(RecordingCheckTrailer, RecordingCheckOK)
	case err == nil:
		w.Header().Set(RecordingCheckTrailer, RecordingCheckLive)
	case errors.As(err, &ae):
		w.Header().Set(RecordingCheckTrailer, "altered: "+ae.Reason)
	case r.Context().Err() != nil:
		// The client went away.
	default:
		// Reading failed: no trailer, so the client sees a stream cut
		// short.
		h.log.Error("stream recording", "session", rs.Info.SessionID, "err", err)
		panic(http.ErrAbortHandler)
	}
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
	changed := h.auth.LocksChanged()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-changed:
			// A follower is cut off like any session once its user is
			// removed, reset or locked, or its request revoked.
			changed = h.auth.LocksChanged()
			if _, err := h.auth.CurrentCaller(r.Context(), c, "api audit stream", remoteIP(r)); err != nil {
				return
			}
			continue
		case <-tick.C:
			// The current state also changes without a lock (an access
			// request's expiry).
			if _, err := h.auth.CurrentCaller(r.Context(), c, "api audit stream", remoteIP(r)); err != nil {
				return
			}
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

// WhoAmI describes the caller.
type WhoAmI struct {
	Kind   string              `json:"kind"`
	User   string              `json:"user"`
	NodeID string              `json:"node_id,omitempty"`
	Roles  []string            `json:"roles,omitempty"`
	Traits map[string][]string `json:"traits,omitempty"`
}

// ReviewBody reviews an access request.
type ReviewBody struct {
	Approve bool   `json:"approve"`
	Reason  string `json:"reason,omitempty"`
}

// Suggestion lists roles the caller could request.
type Suggestion struct {
	Roles []string `json:"roles"`
}

// AuditKey is the public key that verifies the audit log's checkpoints.
type AuditKey struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"` // PEM
}

// CompleteBody closes a recording.
type CompleteBody struct {
	Length      int64  `json:"length"`
	SHA256      string `json:"sha256"`
	Interrupted bool   `json:"interrupted,omitempty"`
}
