package web

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

// session is a signed-in browser. The browser holds only its id; the rest
// is kept by auth's storage (PutWebSession), so sessions survive a proxy
// restart and are shared by every proxy. The identity is the certificate
// auth issued at sign-in, so it carries the same roles, TTL cap, MFA
// device and issue time as a CLI login, and every request checks it with
// auth.Server.CurrentCaller.
type session struct {
	// hash is the SHA-256 of the cookie value: the storage key. The id
	// itself is not kept.
	hash    string
	csrf    string
	caller  auth.Caller
	logins  []string
	created time.Time
	// key and sshCert are the session's SSH identity (for the web terminal).
	key     ed25519.PrivateKey
	sshCert string
	// tlsCert is the TLS certificate (DER) auth issued at sign-in, whose
	// identity caller is: a proxy running apart from auth calls auth as
	// the user with it (Identity).
	tlsCert []byte
}

// identity is the session's Identity for a request from remoteAddr (its
// certificate nil if the session was stored without one).
func (s *session) identity(remoteAddr string) Identity {
	id := Identity{RemoteAddr: remoteAddr}
	if len(s.tlsCert) > 0 {
		id.Cert, _ = x509.ParseCertificate(s.tlsCert)
	}
	return id
}

func (s *session) expires() time.Time { return s.caller.Expires }

// tag names the session in the audit log: a prefix of its storage key,
// which is itself a hash (the cookie value cannot be derived from it).
func (s *session) tag() string { return s.hash[:16] }

// storedSession is what is sealed into storage.
type storedSession struct {
	Caller  auth.Caller `json:"caller"`
	Logins  []string    `json:"logins"`
	CSRF    string      `json:"csrf"`
	Created time.Time   `json:"created"`
	KeySeed []byte      `json:"key_seed"`
	SSHCert string      `json:"ssh_cert"`
	TLSCert []byte      `json:"tls_cert,omitempty"`
}

// sessionStore is where sessions are kept: auth's storage.
type sessionStore interface {
	PutWebSession(ctx context.Context, key string, value []byte, expires time.Time) error
	GetWebSession(ctx context.Context, key string) ([]byte, error)
	DeleteWebSession(ctx context.Context, key string) error
}

// sessions keeps browser sessions in auth's storage, keyed by the SHA-256
// of the cookie value and sealed (AES-256-GCM) with a key derived from
// the cookie value: the stored rows name no cookie, and someone who reads
// the database cannot use a session's SSH key or CSRF token without the
// browser's cookie.
type sessions struct {
	now   func() time.Time
	store sessionStore
}

func newSessions(now func() time.Time, store sessionStore) *sessions {
	return &sessions{now: now, store: store}
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

// sealer is the AEAD of the session a cookie value names.
func sealer(id string) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, []byte(id), nil, "warden web session v1", 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// add stores s and returns the cookie value that names it.
func (st *sessions) add(ctx context.Context, s *session) (string, error) {
	id := randomToken()
	s.hash, s.csrf = hashID(id), randomToken()
	plain, err := json.Marshal(storedSession{Caller: s.caller, Logins: s.logins, CSRF: s.csrf, Created: s.created,
		KeySeed: s.key.Seed(), SSHCert: s.sshCert, TLSCert: s.tlsCert})
	if err != nil {
		return "", err
	}
	aead, err := sealer(id)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := aead.Seal(nonce, nonce, plain, []byte(s.hash))
	if err := st.store.PutWebSession(ctx, s.hash, sealed, s.expires()); err != nil {
		return "", fmt.Errorf("store web session: %w", err)
	}
	return id, nil
}

// get returns the live session a cookie value names.
func (st *sessions) get(ctx context.Context, id string) *session {
	s, _ := st.lookup(ctx, id)
	return s
}

// lookup is get, but tells a store out of reach (ErrAuthUnreachable: a
// proxy running apart that cannot reach auth) from no session.
func (st *sessions) lookup(ctx context.Context, id string) (*session, error) {
	if id == "" || len(id) > 128 {
		return nil, nil
	}
	h := hashID(id)
	sealed, err := st.store.GetWebSession(ctx, h)
	if errors.Is(err, ErrAuthUnreachable) {
		return nil, err
	}
	if err != nil {
		return nil, nil
	}
	aead, err := sealer(id)
	if err != nil || len(sealed) < aead.NonceSize() {
		return nil, nil
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(h))
	if err != nil {
		return nil, nil
	}
	var ss storedSession
	if json.Unmarshal(plain, &ss) != nil || len(ss.KeySeed) != ed25519.SeedSize {
		return nil, nil
	}
	s := &session{hash: h, csrf: ss.CSRF, caller: ss.Caller, logins: ss.Logins, created: ss.Created,
		key: ed25519.NewKeyFromSeed(ss.KeySeed), sshCert: ss.SSHCert, tlsCert: ss.TLSCert}
	if !st.now().Before(s.expires()) {
		return nil, nil
	}
	return s, nil
}

func (st *sessions) remove(ctx context.Context, s *session) error {
	return st.store.DeleteWebSession(ctx, s.hash)
}

// fromRequest returns the request's session, if any.
func (st *sessions) fromRequest(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	return st.get(r.Context(), c.Value)
}

// lookupRequest is fromRequest, telling a store out of reach apart.
func (st *sessions) lookupRequest(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, nil
	}
	return st.lookup(r.Context(), c.Value)
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
