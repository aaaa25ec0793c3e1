package web

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/identity"
)

type pageHandler func(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller)

func (h *Handler) routes() {
	m := h.mux
	m.HandleFunc("GET /web/static/{name}", h.static)
	m.HandleFunc("GET /web/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"servers", http.StatusSeeOther)
	})
	m.HandleFunc("GET /web/login", h.signinPage)
	m.HandleFunc("POST /web/login", h.signin)
	m.HandleFunc("GET /web/login/sso/{name}", h.ssoStart)
	m.HandleFunc("GET /web/login/sso/done", h.ssoDone)
	h.passkeyRoutes()
	m.HandleFunc("POST /web/logout", h.authed(h.signout))
	m.HandleFunc("GET /web/invite/{token}", h.invitePage)
	m.HandleFunc("POST /web/invite/{token}", h.inviteComplete)
	m.HandleFunc("GET /web/invite/{token}/qr.png", h.inviteQR)

	m.HandleFunc("GET /web/me", h.authed(h.me))
	m.HandleFunc("GET /web/servers", h.authed(h.servers))
	m.HandleFunc("GET /web/servers/{node}/terminal", h.authed(h.terminalPage))
	m.HandleFunc("GET /web/servers/{node}/ws", h.authed(h.terminalSocket))
	m.HandleFunc("GET /web/sessions", h.authed(h.liveSessions))
	m.HandleFunc("GET /web/sessions/{id}/join", h.authed(h.joinPage))
	m.HandleFunc("GET /web/sessions/{id}/ws", h.authed(h.joinSocket))
	m.HandleFunc("POST /web/sessions/{id}/terminate", h.authed(h.terminateSession))
	m.HandleFunc("GET /web/requests", h.authed(h.requests))
	m.HandleFunc("POST /web/requests", h.authed(h.createRequest))
	m.HandleFunc("GET /web/requests/{id}", h.authed(h.request))
	m.HandleFunc("POST /web/requests/{id}/review", h.authed(h.reviewRequest))
	m.HandleFunc("GET /web/audit", h.authed(h.auditLog))
	m.HandleFunc("GET /web/audit/export", h.authed(h.auditExport))
	m.HandleFunc("GET /web/recordings", h.authed(h.recordings))
	m.HandleFunc("GET /web/recordings/{id}", h.authed(h.recordingDownload))
	m.HandleFunc("GET /web/recordings/{id}/play", h.authed(h.playerPage))
	m.HandleFunc("GET /web/recordings/{id}/index", h.authed(h.recordingIndex))
	m.HandleFunc("GET /web/recordings/{id}/cast", h.authed(h.recordingCast))
	m.HandleFunc("GET /web/recordings/{id}/search", h.authed(h.recordingSearch))
	m.HandleFunc("GET /web/admin", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"admin/users", http.StatusSeeOther)
	})
	m.HandleFunc("GET /web/admin/users", h.authed(h.adminUsers))
	m.HandleFunc("POST /web/admin/users", h.authed(h.adminAddUser))
	m.HandleFunc("POST /web/admin/users/{name}/reset", h.authed(h.adminResetUser))
	m.HandleFunc("POST /web/admin/users/{name}/delete", h.authed(h.adminDeleteUser))
	m.HandleFunc("POST /web/admin/users/{name}/roles", h.authed(h.adminUserRoles))
	m.HandleFunc("GET /web/admin/roles", h.authed(h.adminRoles))
	m.HandleFunc("POST /web/admin/roles/review", h.authed(h.adminReviewRoles))
	m.HandleFunc("POST /web/admin/roles/apply", h.authed(h.adminApplyRoles))
	m.HandleFunc("POST /web/admin/roles/{name}/delete", h.authed(h.adminDeleteRole))
	m.HandleFunc("GET /web/admin/health", h.authed(h.adminHealth))
	m.HandleFunc("GET /web/admin/locks", h.authed(h.adminLocks))
	m.HandleFunc("POST /web/admin/locks", h.authed(h.adminCreateLock))
	m.HandleFunc("POST /web/admin/locks/{id}/delete", h.authed(h.adminDeleteLock))
	m.HandleFunc("GET /web/admin/tokens", h.authed(h.adminTokens))
	m.HandleFunc("POST /web/admin/tokens", h.authed(h.adminCreateToken))
	m.HandleFunc("POST /web/admin/tokens/{hint}/delete", h.authed(h.adminDeleteToken))
	m.HandleFunc("/web/", func(w http.ResponseWriter, r *http.Request) {
		h.renderError(w, r, h.sessions.fromRequest(r), http.StatusNotFound, "There is no such page.")
	})
}

// authed runs next for a signed-in browser whose identity is still good
// now: auth.Server.CurrentCaller (user exists and signed up, not reset,
// no role lost, no lock, requests still approved) on every request, the
// same check as every API call. State-changing requests must carry the
// session's CSRF token.
func (h *Handler) authed(next pageHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := h.sessions.lookupRequest(r)
		if err != nil {
			// Nothing was decided: this request fails, the session stays.
			if isWebSocket(r) {
				h.refuseUpgrade(w, r, h.message(err))
				return
			}
			h.renderError(w, r, nil, http.StatusServiceUnavailable, h.message(err))
			return
		}
		if s == nil {
			if isWebSocket(r) {
				h.refuseUpgrade(w, r, "you are signed out; sign in again")
				return
			}
			h.needSignin(w, r)
			return
		}
		// Calls to auth for this request are the session's user's.
		r = r.WithContext(WithIdentity(r.Context(), s.identity(remoteIP(r))))
		c, err := h.auth.CurrentCaller(r.Context(), s.caller, "web "+r.Method+" "+r.URL.Path, remoteIP(r))
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			if errors.Is(err, ErrAuthUnreachable) {
				// Nothing was decided: this request fails, the session stays.
				if isWebSocket(r) {
					h.refuseUpgrade(w, r, h.message(err))
					return
				}
				h.renderError(w, r, nil, http.StatusServiceUnavailable, h.message(err))
				return
			}
			// The identity no longer holds: the session ends here.
			if err := h.sessions.remove(context.WithoutCancel(r.Context()), s); err != nil {
				h.log.Error("web: end session", "err", err)
			}
			h.terms.endOwner(s.hash, "session ended: "+h.message(err))
			if isWebSocket(r) {
				h.refuseUpgrade(w, r, "your session has ended: "+h.message(err))
				return
			}
			clearCookie(w, sessionCookie)
			h.renderSignin(w, r, http.StatusUnauthorized, r.URL.RequestURI(), "Your session has ended: "+h.message(err))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !equalToken(s.csrf, r.PostFormValue("csrf")) {
			h.renderError(w, r, s, http.StatusForbidden, "The form has expired or did not come from this site; reload the page and try again.")
			return
		}
		next(w, r, s, c)
	}
}

// needSignin sends a browser without a session to the sign-in page, and
// back to where it was going afterwards.
func (h *Handler) needSignin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		h.renderSignin(w, r, http.StatusUnauthorized, Prefix+"servers", "Please sign in.")
		return
	}
	// A link followed from another site (a chat message) does not carry
	// the SameSite=Strict cookie. Load the page once more from this site,
	// which does: a signed-in reviewer goes straight to the request.
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		if _, err := r.Cookie(sessionCookie); err != nil {
			h.render(w, http.StatusOK, "bounce", view{Title: "Warden", Data: r.URL.RequestURI()})
			return
		}
	}
	http.Redirect(w, r, Prefix+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
}

type signinData struct {
	Next string
	User string
	// Connectors are the SSO connectors, one "Sign in with NAME" button each.
	Connectors []string
}

func (h *Handler) connectors(r *http.Request) []string {
	names, err := h.auth.ConnectorNames(r.Context())
	if err != nil {
		h.log.Error("web: list SSO connectors", "err", err)
	}
	return names
}

func (h *Handler) renderSignin(w http.ResponseWriter, r *http.Request, status int, next, errMsg string) {
	h.render(w, status, "login", view{Title: "Sign in", CSRF: preToken(w, r), Error: errMsg,
		Data: signinData{Next: localPath(next), User: r.PostFormValue("user"), Connectors: h.connectors(r)}})
}

func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"))
	if s := h.sessions.fromRequest(r); s != nil {
		ctx := WithIdentity(r.Context(), s.identity(remoteIP(r)))
		if _, err := h.auth.CurrentCaller(ctx, s.caller, "web GET /web/login", remoteIP(r)); err == nil {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
	}
	v := view{Title: "Sign in", CSRF: preToken(w, r), Data: signinData{Next: next, Connectors: h.connectors(r)}}
	if r.URL.Query().Get("signed_up") == "1" {
		v.Notice = "You are signed up. Sign in with your password and the next code from your authenticator."
	}
	if r.URL.Query().Get("reset") == "1" {
		v.Notice = "Your password and authenticator are reset. Sign in with the new password and the next code from your authenticator."
	}
	if r.URL.Query().Get("enrolled") == "1" {
		v.Notice = "Your passkey is registered. Sign in with it."
	}
	h.render(w, http.StatusOK, "login", v)
}

// signin checks password and TOTP with auth.Server.Login, the same call as
// `warden login`: lockout, replay guard, locks, roles and the TTL cap all
// apply, and it is audited the same way. The certificates it issues, for
// a key pair made here, are the session's identity.
func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	if !checkPreToken(r) {
		h.renderSignin(w, r, http.StatusForbidden, r.PostFormValue("next"), "The form has expired; please try again.")
		return
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		h.renderSignin(w, r, http.StatusInternalServerError, r.PostFormValue("next"), h.message(err))
		return
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		h.renderSignin(w, r, http.StatusInternalServerError, r.PostFormValue("next"), h.message(err))
		return
	}
	resp, err := h.auth.Login(r.Context(), auth.LoginRequest{User: r.PostFormValue("user"), Password: r.PostFormValue("password"),
		OTP: r.PostFormValue("otp"), PublicKey: string(ssh.MarshalAuthorizedKey(sshPub)), RemoteAddr: remoteIP(r), Via: "web"})
	var enrol *auth.PasskeyEnrolment
	if errors.As(err, &enrol) {
		h.renderEnrol(w, r, enrol)
		return
	}
	if err != nil {
		msg := h.message(err)
		if errors.Is(err, auth.ErrUnauthenticated) && msg == auth.ErrUnauthenticated.Error() {
			msg = "Wrong user name, password or code."
		}
		h.renderSignin(w, r, statusOf(err), r.PostFormValue("next"), msg)
		return
	}
	c, leaf, err := callerOf(resp)
	if err != nil {
		h.renderSignin(w, r, http.StatusInternalServerError, r.PostFormValue("next"), h.message(err))
		return
	}
	s := &session{caller: c, tlsCert: leaf.Raw, logins: resp.Logins, created: h.now(), key: priv, sshCert: resp.SSHCert}
	id, err := h.sessions.add(r.Context(), s)
	if err != nil {
		h.renderSignin(w, r, http.StatusInternalServerError, r.PostFormValue("next"), h.message(err))
		return
	}
	setSessionCookie(w, id, c.Expires)
	clearCookie(w, preCookie)
	http.Redirect(w, r, localPath(r.PostFormValue("next")), http.StatusSeeOther)
}

// callerOf is the identity in the TLS certificate a login returned.
func callerOf(resp *auth.LoginResponse) (auth.Caller, *x509.Certificate, error) {
	block, _ := pem.Decode([]byte(resp.TLSCert))
	if block == nil {
		return auth.Caller{}, nil, errors.New("login returned no TLS certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return auth.Caller{}, nil, fmt.Errorf("parse login certificate: %w", err)
	}
	c, err := auth.CallerFromTLS(leaf)
	return c, leaf, err
}

// signout ends the session in storage (a copied cookie is then
// worthless, on every proxy) and audits it (user.logout).
func (h *Handler) signout(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	if err := h.sessions.remove(r.Context(), s); err != nil {
		h.renderError(w, r, s, http.StatusInternalServerError, h.message(err))
		return
	}
	h.terms.endOwner(s.hash, "signed out")
	h.auth.RecordWebLogout(r.Context(), c, s.tag(), remoteIP(r))
	clearCookie(w, sessionCookie)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// signups keeps the TOTP enrolment (secret and QR code) an invite page
// showed, so the QR image can be served by URL rather than inline.
type signups struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]signupEntry
}

type signupEntry struct {
	ch      *auth.SignupChallenge
	expires time.Time
}

func newSignups(now func() time.Time) *signups {
	return &signups{now: now, m: map[string]signupEntry{}}
}

func (s *signups) put(token string, ch *auth.SignupChallenge) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, e := range s.m {
		if !now.Before(e.expires) || len(s.m) > 1000 {
			delete(s.m, k)
		}
	}
	s.m[identity.HashToken(token)] = signupEntry{ch: ch, expires: now.Add(30 * time.Minute)}
}

func (s *signups) get(token string) *auth.SignupChallenge {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[identity.HashToken(token)]
	if !ok || !s.now().Before(e.expires) {
		return nil
	}
	return e.ch
}

type inviteData struct {
	// Reset: the invite of a reset (new password and TOTP), not a signup.
	Reset   bool
	Token   string
	User    string
	Cluster string
	Secret  string
	QR      string
}

// invitePage starts the signup of an invite (auth.Server.BeginSignup, as
// `warden signup` does): a new TOTP secret, shown as a QR code and typed.
func (h *Handler) invitePage(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	ch, err := h.auth.BeginSignup(r.Context(), auth.SignupRequest{Token: tok, RemoteAddr: remoteIP(r)})
	if err != nil {
		h.renderError(w, r, nil, statusOf(err), h.message(err))
		return
	}
	h.signups.put(tok, ch)
	h.renderInvite(w, r, http.StatusOK, tok, ch, "")
}

func (h *Handler) renderInvite(w http.ResponseWriter, r *http.Request, status int, tok string, ch *auth.SignupChallenge, errMsg string) {
	h.render(w, status, "invite", view{Title: "Sign up", CSRF: preToken(w, r), Error: errMsg,
		Data: inviteData{Reset: ch.Reset, Token: tok, User: ch.User, Cluster: ch.Cluster, Secret: ch.Secret,
			QR: Prefix + "invite/" + url.PathEscape(tok) + "/qr.png"}})
}

func (h *Handler) inviteQR(w http.ResponseWriter, r *http.Request) {
	ch := h.signups.get(r.PathValue("token"))
	if ch == nil || len(ch.QRPNG) == 0 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	_, _ = w.Write(ch.QRPNG)
}

func (h *Handler) inviteComplete(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	fail := func(status int, msg string) {
		// The form again with the secret already shown (and perhaps
		// enrolled in an authenticator): the invite still holds it.
		if ch := h.signups.get(tok); ch != nil && status != http.StatusUnauthorized {
			h.renderInvite(w, r, status, tok, ch, msg)
			return
		}
		h.renderError(w, r, nil, status, msg)
	}
	if !checkPreToken(r) {
		fail(http.StatusForbidden, "The form has expired.")
		return
	}
	if r.PostFormValue("password") != r.PostFormValue("password2") {
		fail(http.StatusBadRequest, "The two passwords differ.")
		return
	}
	if _, err := h.auth.CompleteSignup(r.Context(), auth.SignupRequest{Token: tok, Password: r.PostFormValue("password"),
		OTP: r.PostFormValue("otp"), RemoteAddr: remoteIP(r)}); err != nil {
		fail(statusOf(err), h.message(err))
		return
	}
	done := "signed_up=1"
	if ch := h.signups.get(tok); ch != nil && ch.Reset {
		done = "reset=1"
	}
	http.Redirect(w, r, Prefix+"login?"+done, http.StatusSeeOther)
}
