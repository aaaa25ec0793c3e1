package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/wire"
)

// empty is the body of responses that carry nothing.
type empty struct{}

// withBody decodes a JSON body into In, calls fn and writes its result.
func withBody[In, Out any](h *Handler, fn func(r *http.Request, c auth.Caller, in In) (Out, error)) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, c auth.Caller) {
		var in In
		if err := decode(r, &in); err != nil {
			h.fail(w, err)
			return
		}
		out, err := fn(r, c, in)
		respond(h, w, out, err)
	}
}

// withBodyOr is withBody whose errors refused may answer first (true:
// it wrote the response).
func withBodyOr[In, Out any](h *Handler, fn func(r *http.Request, c auth.Caller, in In) (Out, error), refused func(http.ResponseWriter, error) bool) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, c auth.Caller) {
		var in In
		if err := decode(r, &in); err != nil {
			h.fail(w, err)
			return
		}
		out, err := fn(r, c, in)
		if err != nil && refused(w, err) {
			return
		}
		respond(h, w, out, err)
	}
}

// noBody calls fn and writes its result.
func noBody[Out any](h *Handler, fn func(r *http.Request, c auth.Caller) (Out, error)) callerHandler {
	return func(w http.ResponseWriter, r *http.Request, c auth.Caller) {
		out, err := fn(r, c)
		respond(h, w, out, err)
	}
}

// open is withBody for endpoints that need no client certificate.
func open[In, Out any](h *Handler, fn func(r *http.Request, in In) (Out, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		withBody(h, func(r *http.Request, _ auth.Caller, in In) (Out, error) { return fn(r, in) })(w, r, auth.Caller{})
	}
}

// list makes a nil slice encode as [] rather than null.
func list[T any](s []T, err error) ([]T, error) {
	if s == nil {
		s = []T{}
	}
	return s, err
}

func done(err error) (empty, error) { return empty{}, err }

func (h *Handler) routes() {
	m, a := h.mux, h.auth
	m.HandleFunc("GET /v1/ping", h.ping)
	m.HandleFunc("POST /v1/login", open(h, func(r *http.Request, in auth.LoginRequest) (*auth.LoginResponse, error) {
		in.RemoteAddr = remoteIP(r)
		return a.Login(r.Context(), in)
	}))
	m.HandleFunc("POST /v1/signup/begin", open(h, func(r *http.Request, in auth.SignupRequest) (*auth.SignupChallenge, error) {
		in.RemoteAddr = remoteIP(r)
		return a.BeginSignup(r.Context(), in)
	}))
	m.HandleFunc("POST /v1/signup/complete", open(h, func(r *http.Request, in auth.SignupRequest) (*auth.LoginResponse, error) {
		in.RemoteAddr = remoteIP(r)
		return a.CompleteSignup(r.Context(), in)
	}))
	// Single sign-on (OIDC): the CLI starts a login, the browser comes back
	// from the IdP to the callback, the CLI fetches the outcome.
	m.HandleFunc("POST /v1/sso/oidc/begin", open(h, func(r *http.Request, in wire.SSOBeginRequest) (*wire.SSOBeginResponse, error) {
		in.RemoteAddr = remoteIP(r)
		return a.BeginSSO(r.Context(), in) // either kind of connector
	}))
	m.HandleFunc("GET /v1/sso/oidc/callback", h.oidcCallback)
	h.mfaRoutes()
	h.sessionMFARoutes()
	m.HandleFunc("POST /v1/sso/oidc/result", open(h, func(r *http.Request, in wire.SSOResultRequest) (*auth.LoginResponse, error) {
		in.RemoteAddr = remoteIP(r)
		return a.ResultOIDC(r.Context(), in)
	}))
	m.HandleFunc("PUT /v1/connectors/oidc/{name}", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in auth.OIDCConnector) (empty, error) {
		if in.Metadata.Name != r.PathValue("name") {
			return empty{}, fmt.Errorf("%w: connector name in path and body differ", auth.ErrBadRequest)
		}
		return done(a.UpsertConnector(r.Context(), c, &in))
	})))
	m.HandleFunc("GET /v1/connectors/oidc", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]*auth.OIDCConnector, error) {
		return list(a.ListConnectors(r.Context(), c))
	})))
	m.HandleFunc("GET /v1/connectors/oidc/{name}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*auth.OIDCConnector, error) {
		return a.GetConnector(r.Context(), c, r.PathValue("name"))
	})))
	m.HandleFunc("DELETE /v1/connectors/oidc/{name}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		return done(a.DeleteConnector(r.Context(), c, r.PathValue("name")))
	})))
	// SAML: the SP metadata for the IdP, the assertion consumer service
	// the browser posts the IdP's response to, and the connectors.
	m.HandleFunc("GET /v1/sso/saml/{name}/metadata", h.samlMetadata)
	m.HandleFunc("POST /v1/sso/saml/{name}/acs", h.samlACS)
	m.HandleFunc("PUT /v1/connectors/saml/{name}", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in auth.SAMLConnector) (empty, error) {
		if in.Metadata.Name != r.PathValue("name") {
			return empty{}, fmt.Errorf("%w: connector name in path and body differ", auth.ErrBadRequest)
		}
		return done(a.UpsertSAMLConnector(r.Context(), c, &in))
	})))
	m.HandleFunc("GET /v1/connectors/saml", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]*auth.SAMLConnector, error) {
		return list(a.ListSAMLConnectors(r.Context(), c))
	})))
	m.HandleFunc("GET /v1/connectors/saml/{name}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*auth.SAMLConnector, error) {
		return a.GetSAMLConnector(r.Context(), c, r.PathValue("name"))
	})))
	m.HandleFunc("DELETE /v1/connectors/saml/{name}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		return done(a.DeleteSAMLConnector(r.Context(), c, r.PathValue("name")))
	})))
	m.HandleFunc("POST /v1/nodes/join", open(h, func(r *http.Request, in auth.JoinRequest) (*auth.JoinResponse, error) {
		in.RemoteAddr = remoteIP(r)
		return a.JoinNode(r.Context(), in)
	}))

	m.HandleFunc("GET /v1/whoami", h.authed(noBody(h, func(_ *http.Request, c auth.Caller) (WhoAmI, error) {
		return WhoAmI{Kind: c.Kind, User: c.User, NodeID: c.NodeID, Roles: c.Roles, Traits: c.Traits}, nil
	})))
	m.HandleFunc("POST /v1/nodes/renew", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in renewRequest) (*auth.Certs, error) {
		return a.RenewNodeCerts(r.Context(), c, in.PublicKey)
	})))
	h.kubeRoutes()
	h.proxyRoutes()
	h.proxyAgentlessRoutes()
	h.webRoutes()
	h.peeringRoutes()
	m.HandleFunc("GET /v1/nodes", h.authed(func(w http.ResponseWriter, r *http.Request, c auth.Caller) {
		filter := map[string]string{}
		for _, l := range r.URL.Query()["label"] {
			k, v, ok := strings.Cut(l, "=")
			if !ok || k == "" {
				h.fail(w, fmt.Errorf("%w: label filter %q must be key=value", auth.ErrBadRequest, l))
				return
			}
			filter[k] = v
		}
		nodes, err := a.ListNodes(r.Context(), c, filter)
		if err != nil {
			h.fail(w, err)
			return
		}
		// Thousands of nodes: encoded without reflection, as
		// encoding/json would (wire.AppendNodesJSON).
		body, ok := wire.AppendNodesJSON(nil, nodes)
		if !ok {
			writeJSON(w, http.StatusOK, nodes) // its error, as before
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(body, '\n'))
	}))
	m.HandleFunc("POST /v1/events", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in []audit.Event) (empty, error) {
		return done(a.EmitEvents(r.Context(), c, in))
	})))
	m.HandleFunc("GET /v1/audit", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]audit.Event, error) {
		q, err := parseAuditQuery(r)
		if err != nil {
			return nil, err
		}
		return list(a.SearchAudit(r.Context(), c, q))
	})))
	m.HandleFunc("GET /v1/audit/verify", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*audit.VerifyResult, error) {
		return a.VerifyAudit(r.Context(), c)
	})))
	m.HandleFunc("GET /v1/audit/key", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*AuditKey, error) {
		pemKey, id, err := a.ExportAuditKey(r.Context(), c)
		if err != nil {
			return nil, err
		}
		return &AuditKey{KeyID: id, PublicKey: string(pemKey)}, nil
	})))
	m.HandleFunc("GET /v1/audit/stream", h.authed(h.auditStream))
	m.HandleFunc("GET /v1/watch", h.authed(h.watch))
	m.HandleFunc("GET /v1/sessions", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]auth.LiveSession, error) {
		return list(a.ListSessions(r.Context(), c))
	})))

	m.HandleFunc("PUT /v1/recordings/{id}", h.authed(h.recordingAppend))
	m.HandleFunc("POST /v1/recordings/{id}/complete", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in CompleteBody) (empty, error) {
		return done(a.CompleteRecording(r.Context(), c, r.PathValue("id"), in.Length, in.SHA256, in.Interrupted))
	})))
	m.HandleFunc("GET /v1/recordings", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]recording.Info, error) {
		q := r.URL.Query()
		f := auth.RecordingFilter{User: q.Get("user"), Node: q.Get("node")}
		if s := q.Get("since"); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, fmt.Errorf("%w: since must be RFC3339", auth.ErrBadRequest)
			}
			f.Since = t
		}
		return list(a.ListRecordings(r.Context(), c, f))
	})))
	m.HandleFunc("GET /v1/recordings/search", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]auth.RecordingMatch, error) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		return list(a.SearchRecordings(r.Context(), c, r.URL.Query().Get("text"), limit))
	})))
	m.HandleFunc("GET /v1/recordings/verify", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]auth.RecordingCheck, error) {
		return list(a.VerifyRecordings(r.Context(), c, r.URL.Query()["session"]))
	})))
	m.HandleFunc("GET /v1/recordings/{id}", h.authed(h.recordingGet))

	m.HandleFunc("POST /v1/access_requests", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in auth.CreateAccessRequest) (*access.Request, error) {
		return a.CreateAccessRequest(r.Context(), c, in)
	})))
	m.HandleFunc("GET /v1/access_requests", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]*access.Request, error) {
		return list(a.ListAccessRequests(r.Context(), c))
	})))
	m.HandleFunc("GET /v1/access_requests/suggest", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (Suggestion, error) {
		roles, err := a.SuggestRoles(r.Context(), c, r.URL.Query().Get("login"), r.URL.Query().Get("node"))
		return Suggestion{Roles: roles}, err
	})))
	m.HandleFunc("GET /v1/access_requests/{id}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*access.Request, error) {
		return a.GetAccessRequest(r.Context(), c, r.PathValue("id"))
	})))
	m.HandleFunc("POST /v1/access_requests/{id}/review", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in ReviewBody) (*access.Request, error) {
		return a.ReviewAccessRequest(r.Context(), c, r.PathValue("id"), in.Approve, in.Reason)
	})))
	m.HandleFunc("POST /v1/access_requests/{id}/revoke", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in ReviewBody) (*access.Request, error) {
		return a.RevokeAccessRequest(r.Context(), c, r.PathValue("id"), in.Reason)
	})))
	m.HandleFunc("POST /v1/access_requests/{id}/use", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in renewRequest) (*auth.LoginResponse, error) {
		return a.UseAccessRequest(r.Context(), c, r.PathValue("id"), in.PublicKey, remoteIP(r))
	})))

	m.HandleFunc("POST /v1/locks", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in auth.CreateLockRequest) (*auth.CreateLockResult, error) {
		return a.CreateLock(r.Context(), c, in)
	})))
	m.HandleFunc("GET /v1/locks", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]*lock.Lock, error) {
		return list(a.ListLocks(r.Context(), c))
	})))
	m.HandleFunc("DELETE /v1/locks/{id}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		return done(a.DeleteLock(r.Context(), c, r.PathValue("id")))
	})))

	m.HandleFunc("POST /v1/users", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in auth.CreateUserRequest) (*auth.InviteResult, error) {
		return a.CreateUser(r.Context(), c, in)
	})))
	m.HandleFunc("GET /v1/users", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]auth.UserInfo, error) {
		return list(a.ListUsers(r.Context(), c))
	})))
	m.HandleFunc("DELETE /v1/users/{name}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		return done(a.DeleteUser(r.Context(), c, r.PathValue("name")))
	})))
	m.HandleFunc("PATCH /v1/users/{name}", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in auth.UpdateUserRequest) (*auth.UserInfo, error) {
		return a.UpdateUser(r.Context(), c, r.PathValue("name"), in)
	})))
	m.HandleFunc("POST /v1/users/{name}/reset", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*auth.InviteResult, error) {
		return a.ResetUser(r.Context(), c, r.PathValue("name"))
	})))

	m.HandleFunc("PUT /v1/roles/{name}", h.authed(withBody(h, func(r *http.Request, c auth.Caller, role policy.Role) (empty, error) {
		if role.Metadata.Name != r.PathValue("name") {
			return empty{}, fmt.Errorf("%w: role name in the URL and the body differ", auth.ErrBadRequest)
		}
		return done(a.UpsertRole(r.Context(), c, &role))
	})))
	m.HandleFunc("GET /v1/roles", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]*policy.Role, error) {
		return list(a.ListRoles(r.Context(), c))
	})))
	m.HandleFunc("GET /v1/roles/{name}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*policy.Role, error) {
		return a.GetRole(r.Context(), c, r.PathValue("name"))
	})))
	m.HandleFunc("DELETE /v1/roles/{name}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		return done(a.DeleteRole(r.Context(), c, r.PathValue("name")))
	})))

	m.HandleFunc("POST /v1/tokens", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in auth.CreateTokenRequest) (*auth.TokenResult, error) {
		return a.CreateToken(r.Context(), c, in)
	})))
	m.HandleFunc("GET /v1/tokens", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]auth.Token, error) {
		return list(a.ListTokens(r.Context(), c))
	})))
	m.HandleFunc("DELETE /v1/tokens/{id}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		return done(a.DeleteToken(r.Context(), c, r.PathValue("id")))
	})))
	h.botRoutes()
	h.agentlessRoutes()
}

// oidcCallback is where the IdP sends the browser back: auth finishes the
// login and the browser goes on to the CLI's loopback listener.
func (h *Handler) oidcCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	idpErr := q.Get("error")
	if d := q.Get("error_description"); d != "" && idpErr != "" {
		idpErr += ": " + d
	}
	if len(idpErr) > 256 {
		idpErr = idpErr[:256]
	}
	next, err := h.auth.OIDCCallback(r.Context(), q.Get("state"), q.Get("code"), idpErr, remoteIP(r))
	if err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(statusOf(err))
		fmt.Fprintf(w, "warden: single sign-on failed: %v\n", err)
		return
	}
	http.Redirect(w, r, next, http.StatusFound)
}

// samlMetadata serves a SAML connector's SP metadata, for the IdP.
func (h *Handler) samlMetadata(w http.ResponseWriter, r *http.Request) {
	b, err := h.auth.SAMLMetadata(r.Context(), r.PathValue("name"))
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	w.Write(b)
}

// samlACS is where the browser posts the IdP's SAML response: auth
// finishes the login and the browser goes on (303) to the CLI's loopback
// listener or the web UI.
func (h *Handler) samlACS(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, auth.MaxSAMLResponse+8<<10)
	fail := func(code int, err error) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintf(w, "warden: single sign-on failed: %v\n", err)
	}
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(http.StatusRequestEntityTooLarge, errors.New("the SAML response is too large"))
			return
		}
		fail(http.StatusBadRequest, errors.New("malformed form"))
		return
	}
	next, err := h.auth.SAMLACS(r.Context(), r.PathValue("name"), r.PostForm.Get("SAMLResponse"), r.PostForm.Get("RelayState"), remoteIP(r))
	if err != nil {
		fail(statusOf(err), err)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}
