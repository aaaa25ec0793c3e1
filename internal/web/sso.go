package web

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
)

// ssoCookie ties a browser to the single sign-on it started. SameSite=Lax:
// the browser comes back from the IdP by a cross-site navigation, which a
// Strict cookie would not follow.
const ssoCookie = "warden_sso"

// ssoLogins are the web sign-ins waiting for the IdP: the key pair made
// here and the token that fetches the outcome, by the browser's cookie.
type ssoLogins struct {
	mu sync.Mutex
	m  map[string]ssoLogin
}

type ssoLogin struct {
	id, resultToken, next string
	key                   ed25519.PrivateKey
	expires               time.Time
}

func (l *ssoLogins) put(cookie string, v ssoLogin) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]ssoLogin{}
	}
	for k, e := range l.m {
		if time.Now().After(e.expires) {
			delete(l.m, k)
		}
	}
	l.m[cookie] = v
}

func (l *ssoLogins) take(cookie string) (ssoLogin, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.m[cookie]
	delete(l.m, cookie)
	return v, ok && time.Now().Before(v.expires)
}

// ssoStart is the "Sign in with NAME" link: the same auth.BeginSSO (OIDC or SAML) as
// `warden login --sso`, coming back to ssoDone on this proxy. A link (GET),
// not a form: the page's CSP (form-action 'self') would stop a form's
// redirect to the IdP. Starting a sign-in changes nothing but this
// browser's own cookie, and only the browser holding it can finish.
func (h *Handler) ssoStart(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		h.renderSignin(w, r, http.StatusInternalServerError, next, h.message(err))
		return
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		h.renderSignin(w, r, http.StatusInternalServerError, next, h.message(err))
		return
	}
	begin, err := h.auth.BeginSSO(r.Context(), auth.SSOBeginRequest{Connector: r.PathValue("name"),
		PublicKey: string(ssh.MarshalAuthorizedKey(sshPub)), ClientRedirect: Prefix + "login/sso/done", RemoteAddr: remoteIP(r), Web: true})
	if err != nil {
		h.renderSignin(w, r, statusOf(err), next, h.message(err))
		return
	}
	cookie := randomToken()
	h.sso.put(cookie, ssoLogin{id: begin.ID, resultToken: begin.ResultToken, next: localPath(next), key: priv,
		expires: time.Now().Add(10 * time.Minute)})
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: cookie, Path: Prefix + "login/sso/", MaxAge: 600,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, begin.AuthURL, http.StatusSeeOther)
}

// ssoDone is where the proxy's SSO callback sends the browser: the
// outcome is fetched with the token only this browser's entry holds and
// the one-time code in this request's URL, and
// the certificates become the session's identity, as a password sign-in's.
func (h *Handler) ssoDone(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(ssoCookie)
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: "", Path: Prefix + "login/sso/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	var l ssoLogin
	ok := err == nil
	if ok {
		l, ok = h.sso.take(c.Value)
	}
	if !ok || l.id != r.URL.Query().Get("id") {
		h.renderSignin(w, r, http.StatusUnauthorized, Prefix+"servers", "This single sign-on was not started in this browser, or took too long; please try again.")
		return
	}
	// Both halves: the result token this browser's cookie entry holds, and
	// the one-time code the IdP's return brought to this very request. A
	// browser that started a sign-in and sent the IdP's link to someone
	// else has the cookie but never sees the code.
	resp, err := h.auth.ResultOIDC(r.Context(), auth.SSOResultRequest{ID: l.id, ResultToken: l.resultToken,
		Code: r.URL.Query().Get("code"), RemoteAddr: remoteIP(r)})
	if err != nil {
		h.renderSignin(w, r, statusOf(err), l.next, h.message(err))
		return
	}
	caller, leaf, err := callerOf(resp)
	if err != nil {
		h.renderSignin(w, r, http.StatusInternalServerError, l.next, h.message(err))
		return
	}
	s := &session{caller: caller, tlsCert: leaf.Raw, logins: resp.Logins, created: h.now(), key: l.key, sshCert: resp.SSHCert}
	id, err := h.sessions.add(r.Context(), s)
	if err != nil {
		h.renderSignin(w, r, http.StatusInternalServerError, l.next, h.message(err))
		return
	}
	setSessionCookie(w, id, caller.Expires)
	http.Redirect(w, r, l.next, http.StatusSeeOther)
}
