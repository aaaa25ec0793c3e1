package web

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

// Passkeys in the web UI: the Security page (MFA devices, passkey
// registration, recovery codes), sign-in with a passkey (passwordless, or
// after the password instead of a code), the page `warden login --passkey`
// opens, and the registration of a first passkey when the cluster
// requires one. The WebAuthn ceremonies run in the page's script
// (src/passkeys.js), which posts forms (with the CSRF token) and reads
// JSON back; auth checks every response.

// enrolCookie holds the enrolment token of a password sign-in refused for
// want of a passkey: it lets this browser register one, nothing more.
const enrolCookie = "warden_enrol"

func (h *Handler) passkeyRoutes() {
	m := h.mux
	m.HandleFunc("GET /web/security", h.authed(h.securityPage))
	m.HandleFunc("POST /web/security/passkeys/begin", h.authed(h.securityPasskeyBegin))
	m.HandleFunc("POST /web/security/passkeys/finish", h.authed(h.securityPasskeyFinish))
	m.HandleFunc("POST /web/security/mfa/begin", h.authed(h.securityMFABegin))
	m.HandleFunc("POST /web/security/devices/{name}/delete", h.authed(h.securityDeleteDevice))
	m.HandleFunc("POST /web/security/recovery-codes", h.authed(h.securityRecoveryCodes))
	m.HandleFunc("GET /web/login/passkey", h.passkeyPage)
	m.HandleFunc("POST /web/login/passkey/begin", h.passkeyBegin)
	m.HandleFunc("POST /web/login/passkey/finish", h.passkeyFinish)
	m.HandleFunc("POST /web/login/passkey/enrol/begin", h.enrolBegin)
	m.HandleFunc("POST /web/login/passkey/enrol/finish", h.enrolFinish)
	m.HandleFunc("GET /web/mfa", h.mfaPage)
	m.HandleFunc("POST /web/mfa/begin", h.mfaBegin)
	m.HandleFunc("POST /web/mfa/finish", h.mfaFinish)
}

// mfaPage is what a CLI command that needs a fresh MFA check with a
// passkey opens (auth.BeginMFAHandoff): one button.
func (h *Handler) mfaPage(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if state == "" || len(state) > 128 {
		h.renderError(w, r, nil, http.StatusBadRequest, "This page is opened by a warden command that needs an MFA check; run it again.")
		return
	}
	h.render(w, http.StatusOK, "mfa_handoff", view{Title: "Confirm with a passkey", CSRF: preToken(w, r), Data: passkeyPageData{State: state}})
}

func (h *Handler) mfaBegin(w http.ResponseWriter, r *http.Request) {
	if !checkPreToken(r) {
		h.writeJSON(w, nil, fmt.Errorf("%w: the form has expired; reload the page", auth.ErrBadRequest))
		return
	}
	ch, err := h.auth.BeginHandoffMFAChallenge(r.Context(), r.PostFormValue("state"))
	h.writeJSON(w, ch, err)
}

// mfaFinish hands the passkey's answer to auth; the browser then goes to
// the CLI's loopback callback, whatever the outcome (the CLI prints it).
func (h *Handler) mfaFinish(w http.ResponseWriter, r *http.Request) {
	if !checkPreToken(r) {
		h.writeJSON(w, nil, fmt.Errorf("%w: the form has expired; reload the page", auth.ErrBadRequest))
		return
	}
	res, err := h.auth.FinishMFAHandoff(r.Context(), r.PostFormValue("state"),
		wire.MFAResponse{ChallengeID: r.PostFormValue("id"), WebAuthn: json.RawMessage(r.PostFormValue("response"))})
	if res != nil && res.Redirect != "" {
		h.writeJSON(w, map[string]string{"redirect": res.Redirect}, nil)
		return
	}
	h.writeJSON(w, nil, err)
}

// writeJSON answers a script: v, or {"error": message} with the status.
func (h *Handler) writeJSON(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(statusOf(err))
		_ = json.NewEncoder(w).Encode(map[string]string{"error": h.message(err)})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

type securityData struct {
	Devices         []wire.MFADevice
	RecoveryLeft    int
	PasskeyRequired bool
	// Add is the name the passkey form suggests (warden mfa add --type passkey).
	Add string
	// Codes are new recovery codes, shown once.
	Codes []string
}

func (h *Handler) renderSecurity(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller, status int, v view) {
	devs, err := h.auth.ListMFADevices(r.Context(), c)
	if err != nil {
		h.renderError(w, r, s, statusOf(err), h.message(err))
		return
	}
	d, _ := v.Data.(securityData)
	d.Devices, d.RecoveryLeft, d.PasskeyRequired = devs.Devices, devs.RecoveryCodesLeft, devs.PasskeyRequired
	v.Data = d
	h.render(w, status, "security", v)
}

func (h *Handler) securityPage(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	v := h.view(s, "Security", "me", securityData{Add: r.URL.Query().Get("add")})
	switch r.URL.Query().Get("done") {
	case "added":
		v.Notice = "The passkey was registered."
	case "removed":
		v.Notice = "The device was removed."
	}
	h.renderSecurity(w, r, s, c, http.StatusOK, v)
}

func (h *Handler) securityPasskeyBegin(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	ch, err := h.auth.BeginAddMFADevice(r.Context(), c, wire.MFAAddRequest{Kind: "webauthn", Name: r.PostFormValue("name")})
	h.writeJSON(w, ch, err)
}

func (h *Handler) securityPasskeyFinish(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	d, err := h.auth.FinishAddMFADevice(r.Context(), c, wire.MFAAddFinish{ID: r.PostFormValue("id"), WebAuthn: json.RawMessage(r.PostFormValue("response"))})
	h.writeJSON(w, map[string]any{"device": d, "redirect": Prefix + "security?done=added"}, err)
}

func (h *Handler) securityMFABegin(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	ch, err := h.auth.BeginMFAChallenge(r.Context(), c)
	h.writeJSON(w, ch, err)
}

func (h *Handler) securityDeleteDevice(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	if err := h.auth.DeleteMFADevice(r.Context(), c, r.PathValue("name")); err != nil {
		v := h.view(s, "Security", "me", securityData{})
		v.Error = h.message(err)
		h.renderSecurity(w, r, s, c, statusOf(err), v)
		return
	}
	http.Redirect(w, r, Prefix+"security?done=removed", http.StatusSeeOther)
}

// securityRecoveryCodes makes new recovery codes after a fresh MFA check
// (a code, or the passkey assertion the script put in the form), and
// shows them once.
func (h *Handler) securityRecoveryCodes(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	resp := wire.MFAResponse{OTP: r.PostFormValue("otp"), ChallengeID: r.PostFormValue("challenge_id")}
	if a := r.PostFormValue("webauthn"); a != "" {
		resp.WebAuthn = json.RawMessage(a)
	}
	v := h.view(s, "Security", "me", securityData{})
	rc, err := h.auth.RegenerateRecoveryCodes(r.Context(), c, resp)
	if err != nil {
		v.Error = h.message(err)
		h.renderSecurity(w, r, s, c, statusOf(err), v)
		return
	}
	v.Data = securityData{Codes: rc.Codes}
	v.Notice = "New recovery codes: store them now, they are not shown again. The old ones no longer work."
	h.renderSecurity(w, r, s, c, http.StatusOK, v)
}

type passkeyPageData struct {
	State, Next string
}

// passkeyPage is what `warden login --passkey` opens: one button, a
// passwordless sign-in whose certificates go to the CLI's key.
func (h *Handler) passkeyPage(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if state == "" || len(state) > 128 {
		h.renderError(w, r, nil, http.StatusBadRequest, "This page is opened by warden login --passkey; run it again.")
		return
	}
	h.render(w, http.StatusOK, "passkey_login", view{Title: "Sign in with a passkey", CSRF: preToken(w, r), Data: passkeyPageData{State: state}})
}

// passkeyBegin starts a passkey sign-in: passwordless without a user, or
// the second factor after the user's password.
func (h *Handler) passkeyBegin(w http.ResponseWriter, r *http.Request) {
	if !checkPreToken(r) {
		h.writeJSON(w, nil, fmt.Errorf("%w: the form has expired; reload the page", auth.ErrBadRequest))
		return
	}
	ch, err := h.auth.BeginPasskeyLogin(r.Context(), wire.PasskeyLoginBegin{User: r.PostFormValue("user"),
		Password: r.PostFormValue("password"), RemoteAddr: remoteIP(r)})
	if errors.Is(err, auth.ErrUnauthenticated) && h.message(err) == auth.ErrUnauthenticated.Error() {
		err = fmt.Errorf("%w: wrong user name or password", auth.ErrUnauthenticated)
	}
	h.writeJSON(w, ch, err)
}

// passkeyFinish ends a passkey sign-in: for the CLI (a state) the browser
// goes on to its loopback listener; otherwise the certificates, for a key
// pair made here, become this browser's session.
func (h *Handler) passkeyFinish(w http.ResponseWriter, r *http.Request) {
	if !checkPreToken(r) {
		h.writeJSON(w, nil, fmt.Errorf("%w: the form has expired; reload the page", auth.ErrBadRequest))
		return
	}
	req := wire.PasskeyLoginFinish{ID: r.PostFormValue("id"), WebAuthn: json.RawMessage(r.PostFormValue("response")),
		State: r.PostFormValue("state"), RemoteAddr: remoteIP(r), Via: "web"}
	var priv ed25519.PrivateKey
	if req.State == "" {
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			h.writeJSON(w, nil, err)
			return
		}
		sshPub, err := ssh.NewPublicKey(pub)
		if err != nil {
			h.writeJSON(w, nil, err)
			return
		}
		req.PublicKey, priv = string(ssh.MarshalAuthorizedKey(sshPub)), k
	}
	res, err := h.auth.FinishPasskeyLogin(r.Context(), req)
	if res != nil && res.Redirect != "" {
		// The CLI's sign-in ended, well or not: it gets the outcome (and
		// prints the reason of a refusal) from its loopback callback.
		h.writeJSON(w, map[string]string{"redirect": res.Redirect}, nil)
		return
	}
	if err != nil {
		h.writeJSON(w, nil, err)
		return
	}
	c, leaf, err := callerOf(res.Login)
	if err != nil {
		h.writeJSON(w, nil, err)
		return
	}
	s := &session{caller: c, tlsCert: leaf.Raw, logins: res.Login.Logins, created: h.now(), key: priv, sshCert: res.Login.SSHCert}
	id, err := h.sessions.add(r.Context(), s)
	if err != nil {
		h.writeJSON(w, nil, err)
		return
	}
	setSessionCookie(w, id, c.Expires)
	clearCookie(w, preCookie)
	h.writeJSON(w, map[string]string{"redirect": localPath(r.PostFormValue("next"))}, nil)
}

// renderEnrol is the answer to a password sign-in refused for want of a
// passkey: the page that registers one, with this browser's token.
func (h *Handler) renderEnrol(w http.ResponseWriter, r *http.Request, e *auth.PasskeyEnrolment) {
	http.SetCookie(w, &http.Cookie{Name: enrolCookie, Value: e.Token, Path: Prefix + "login/passkey/enrol/", MaxAge: 600,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	h.render(w, http.StatusForbidden, "passkey_enrol", view{Title: "Register a passkey", CSRF: preToken(w, r),
		Notice: "This cluster requires a passkey to sign in, and you have none yet: register one now.",
		Data:   passkeyPageData{Next: localPath(r.PostFormValue("next"))}})
}

func (h *Handler) enrolBegin(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(enrolCookie)
	if !checkPreToken(r) || err != nil {
		h.writeJSON(w, nil, fmt.Errorf("%w: sign in with your password again", auth.ErrUnauthenticated))
		return
	}
	ch, err := h.auth.BeginEnrolPasskey(r.Context(), c.Value, r.PostFormValue("name"))
	h.writeJSON(w, ch, err)
}

func (h *Handler) enrolFinish(w http.ResponseWriter, r *http.Request) {
	if !checkPreToken(r) {
		h.writeJSON(w, nil, fmt.Errorf("%w: the form has expired; reload the page", auth.ErrBadRequest))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: enrolCookie, Value: "", Path: Prefix + "login/passkey/enrol/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	_, err := h.auth.FinishEnrolPasskey(r.Context(), wire.MFAAddFinish{ID: r.PostFormValue("id"), WebAuthn: json.RawMessage(r.PostFormValue("response"))})
	h.writeJSON(w, map[string]string{"redirect": Prefix + "login?enrolled=1&next=" + url.QueryEscape(localPath(r.PostFormValue("next")))}, err)
}
