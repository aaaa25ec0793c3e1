package web

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/auth"
)

// Cookie names. The __Host- prefix makes the browser refuse them unless
// they are Secure, have Path=/ and no Domain: no other host, and no plain
// HTTP page, can set or overwrite them.
const (
	sessionCookie = "__Host-warden_session"
	// preCookie carries the CSRF token of the forms used before a session
	// exists (sign-in, invite), checked against the form (double submit).
	preCookie = "__Host-warden_pre"
)

// maxSessions bounds the sessions kept in memory; the oldest give way.
const maxSessions = 10000

// session is a signed-in browser. The browser holds only its id; the rest
// stays here. The identity is the certificate auth issued at sign-in, so
// it carries the same roles, TTL cap, MFA device and issue time as a CLI
// login, and every request checks it with auth.Server.CurrentCaller.
type session struct {
	// hash is the SHA-256 of the cookie value: the map key. The id
	// itself is not kept.
	hash    string
	csrf    string
	caller  auth.Caller
	logins  []string
	created time.Time
	// key and sshCert are the session's SSH identity (for the web terminal).
	key     ed25519.PrivateKey
	sshCert string
}

func (s *session) expires() time.Time { return s.caller.Expires }

// sessions is the in-memory session store.
type sessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, m: map[string]*session{}}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on Linux (getrandom)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// add stores s and returns the cookie value that names it.
func (st *sessions) add(s *session) string {
	id := randomToken()
	s.hash, s.csrf = hashID(id), randomToken()
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	if len(st.m) >= maxSessions {
		var oldest *session
		for k, v := range st.m {
			if !now.Before(v.expires()) {
				delete(st.m, k)
				continue
			}
			if oldest == nil || v.created.Before(oldest.created) {
				oldest = v
			}
		}
		if len(st.m) >= maxSessions && oldest != nil {
			delete(st.m, oldest.hash)
		}
	}
	st.m[s.hash] = s
	return id
}

// get returns the live session a cookie value names.
func (st *sessions) get(id string) *session {
	if id == "" || len(id) > 128 {
		return nil
	}
	h := hashID(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.m[h]
	if s == nil {
		return nil
	}
	if !st.now().Before(s.expires()) {
		delete(st.m, h)
		return nil
	}
	return s
}

func (st *sessions) remove(s *session) {
	st.mu.Lock()
	delete(st.m, s.hash)
	st.mu.Unlock()
}

// fromRequest returns the request's session, if any.
func (st *sessions) fromRequest(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	return st.get(c.Value)
}

func setSessionCookie(w http.ResponseWriter, id string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", Expires: expires,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// preToken returns the CSRF token for forms shown before sign-in, setting
// its cookie when the browser has none.
func preToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(preCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: tok, Path: "/", MaxAge: 3600,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return tok
}

// checkPreToken reports whether a pre-session form carries the token of
// the browser's cookie.
func checkPreToken(r *http.Request) bool {
	c, err := r.Cookie(preCookie)
	return err == nil && c.Value != "" && equalToken(c.Value, r.PostFormValue("csrf"))
}

func equalToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
