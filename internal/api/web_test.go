package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/wire"
)

// exerciseWebRoutes calls every route of the web UI of a proxy running
// apart (TestEveryRouteReachesItsHandler), each as the caller it is for,
// and checks it refuses the others: the web sessions' storage and the
// connector names are a proxy's own calls (not a user's, not a client's a
// proxy forwards, not the admin's); the others are the forwarded user's,
// decided on current state (a lock refuses them), never the proxy's own.
func exerciseWebRoutes(t *testing.T, e *env, admin *Client) {
	proxy, _ := e.joinProxy(admin)
	user, up := e.signup(admin, "webuser", "access")
	fwd := []string{HeaderClientCert, base64.StdEncoding.EncodeToString(certDER(t, up.TLSCert)), HeaderClientAddr, "192.0.2.9"}

	key := strings.Repeat("ab", 32)
	path := "/v1/proxies/web-sessions/" + key
	sess := WebSession{Value: []byte("sealed"), Expires: e.clock.Now().Add(time.Hour)}
	e.call(proxy, "PUT", path, sess, http.StatusOK)
	if got := decodeAs[WebSession](t, e.call(proxy, "GET", path, nil, http.StatusOK)); string(got.Value) != "sealed" {
		t.Errorf("web session read back: %q", got.Value)
	}
	e.call(proxy, "PUT", "/v1/proxies/web-sessions/not-a-hash", sess, http.StatusBadRequest)
	if names := decodeAs[[]string](t, e.call(proxy, "GET", "/v1/proxies/sso-connectors", nil, http.StatusOK)); names == nil {
		t.Error("connector names: null, want []")
	}
	for name, call := range map[string]func(method, path string, body any, want int){
		"a user":                    func(m, p string, b any, want int) { e.call(user, m, p, b, want) },
		"the admin":                 func(m, p string, b any, want int) { e.call(admin, m, p, b, want) },
		"a client a proxy forwards": func(m, p string, b any, want int) { e.call(proxy, m, p, b, want, fwd...) },
	} {
		t.Logf("the proxy's own web calls, as %s", name)
		call("PUT", path, sess, http.StatusForbidden)
		call("GET", path, nil, http.StatusForbidden)
		call("DELETE", path, nil, http.StatusForbidden)
		call("GET", "/v1/proxies/sso-connectors", nil, http.StatusForbidden)
	}
	e.call(proxy, "DELETE", path, nil, http.StatusOK)
	e.call(proxy, "GET", path, nil, http.StatusNotFound)

	// The proxy's certificate for browsers: ECDSA, for its names.
	webKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(&webKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	webCert := PeerCertRequest{PublicKey: string(ssh.MarshalAuthorizedKey(sshPub))}
	got := decodeAs[PeerCertResponse](t, e.call(proxy, "POST", "/v1/proxies/web-cert", webCert, http.StatusOK))
	if cert, err := x509.ParseCertificate(got.Cert); err != nil || cert.VerifyHostname("proxy-a.example") != nil || cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("the proxy's web certificate: %v", err)
	}
	_, edPub := newKey(t)
	e.call(proxy, "POST", "/v1/proxies/web-cert", PeerCertRequest{PublicKey: edPub}, http.StatusBadRequest)
	e.call(user, "POST", "/v1/proxies/web-cert", webCert, http.StatusForbidden)
	e.call(proxy, "POST", "/v1/proxies/web-cert", webCert, http.StatusForbidden, fwd...)

	// The web sign-in: a proxy's call, for the browser's address.
	_, pub := newKey(t)
	login := WebLoginRequest{Login: auth.LoginRequest{User: "webuser", Password: "a good long password", OTP: e.totp(up.secret), PublicKey: pub},
		RemoteAddr: "192.0.2.7"}
	if got := decodeAs[auth.LoginResponse](t, e.call(proxy, "POST", "/v1/proxies/web-login", login, http.StatusOK)); got.User != "webuser" || got.TLSCert == "" {
		t.Errorf("web sign-in: %+v", got)
	}
	login.Login.Password = "wrong password!!"
	e.call(proxy, "POST", "/v1/proxies/web-login", login, http.StatusUnauthorized)
	login.RemoteAddr = "not an address"
	e.call(proxy, "POST", "/v1/proxies/web-login", login, http.StatusBadRequest)
	e.call(user, "POST", "/v1/proxies/web-login", login, http.StatusForbidden)
	e.call(proxy, "POST", "/v1/proxies/web-login", login, http.StatusForbidden, fwd...)

	// The web single sign-on's begin: a proxy's call only, for the
	// browser's address; the browser returns to a path under /web/ on
	// the proxy (which the public begin refuses), never elsewhere.
	sso := WebSSOBegin{Begin: wire.SSOBeginRequest{Connector: "corp", PublicKey: pub, ClientRedirect: "/web/login/sso/done"}, RemoteAddr: "192.0.2.7"}
	e.call(proxy, "POST", "/v1/proxies/web-sso/begin", sso, http.StatusNotFound) // no such connector: past the checks
	e.call(proxy, "POST", "/v1/sso/oidc/begin", sso.Begin, http.StatusBadRequest)
	e.call(user, "POST", "/v1/proxies/web-sso/begin", sso, http.StatusForbidden)
	e.call(proxy, "POST", "/v1/proxies/web-sso/begin", sso, http.StatusForbidden, fwd...)
	sso.RemoteAddr = "not an address"
	e.call(proxy, "POST", "/v1/proxies/web-sso/begin", sso, http.StatusBadRequest)
	sso.RemoteAddr, sso.Begin.ClientRedirect = "192.0.2.7", "https://elsewhere.example/web/login/sso/done"
	e.call(proxy, "POST", "/v1/proxies/web-sso/begin", sso, http.StatusBadRequest)

	// The web passkey sign-in: a proxy's call, for the browser's address.
	// A passwordless begin gives a ceremony ID; the finish names it, and
	// an ID auth did not give (or already spent) is refused.
	begin := WebPasskeyBegin{RemoteAddr: "192.0.2.7"}
	ch := decodeAs[wire.PasskeyLoginChallenge](t, e.call(proxy, "POST", "/v1/proxies/passkey-login/begin", begin, http.StatusOK))
	if ch.ID == "" || !strings.Contains(string(ch.WebAuthn), "challenge") {
		t.Errorf("web passkey challenge: %+v", ch)
	}
	finish := WebPasskeyFinish{Finish: wire.PasskeyLoginFinish{ID: "not-a-ceremony", WebAuthn: []byte(`{}`), PublicKey: pub}, RemoteAddr: "192.0.2.7"}
	e.call(proxy, "POST", "/v1/proxies/passkey-login/finish", finish, http.StatusUnauthorized)
	finish.Finish.State = "a-cli-handoff"
	e.call(proxy, "POST", "/v1/proxies/passkey-login/finish", finish, http.StatusBadRequest)
	// The browser's half of `warden login --passkey`: only a state auth
	// gave (TestSplitProxyPasskeyHandoff has one), only for a proxy.
	e.call(proxy, "POST", "/v1/proxies/passkey-login/handoff", finish, http.StatusUnauthorized)
	e.call(user, "POST", "/v1/proxies/passkey-login/handoff", finish, http.StatusForbidden)
	e.call(proxy, "POST", "/v1/proxies/passkey-login/handoff", finish, http.StatusForbidden, fwd...)
	finish.Finish.State = ""
	e.call(proxy, "POST", "/v1/proxies/passkey-login/handoff", finish, http.StatusBadRequest)
	// The page of `warden mfa ... --passkey`: likewise.
	mfa := WebMFAHandoff{State: "not-a-state"}
	e.call(proxy, "POST", "/v1/proxies/mfa-handoff/begin", mfa, http.StatusUnauthorized)
	e.call(proxy, "POST", "/v1/proxies/mfa-handoff/finish", mfa, http.StatusUnauthorized)
	e.call(user, "POST", "/v1/proxies/mfa-handoff/begin", mfa, http.StatusForbidden)
	e.call(user, "POST", "/v1/proxies/mfa-handoff/finish", mfa, http.StatusForbidden)
	e.call(proxy, "POST", "/v1/proxies/mfa-handoff/begin", mfa, http.StatusForbidden, fwd...)
	e.call(proxy, "POST", "/v1/proxies/mfa-handoff/finish", mfa, http.StatusForbidden, fwd...)
	e.call(proxy, "POST", "/v1/proxies/mfa-handoff/begin", WebMFAHandoff{}, http.StatusBadRequest)
	finish.Finish.State = "a-cli-handoff"
	begin.RemoteAddr, finish.RemoteAddr = "not an address", "not an address"
	e.call(proxy, "POST", "/v1/proxies/passkey-login/begin", begin, http.StatusBadRequest)
	e.call(proxy, "POST", "/v1/proxies/passkey-login/finish", finish, http.StatusBadRequest)
	e.call(proxy, "POST", "/v1/proxies/passkey-login/handoff", finish, http.StatusBadRequest)
	e.call(user, "POST", "/v1/proxies/passkey-login/begin", begin, http.StatusForbidden)
	e.call(user, "POST", "/v1/proxies/passkey-login/finish", finish, http.StatusForbidden)
	e.call(proxy, "POST", "/v1/proxies/passkey-login/begin", begin, http.StatusForbidden, fwd...)
	e.call(proxy, "POST", "/v1/proxies/passkey-login/finish", finish, http.StatusForbidden, fwd...)
	// The first passkey's registration: only with a token auth gave at a
	// refused sign-in (TestSplitProxyWebRequirePasskey has one), only for
	// a proxy.
	enrol := WebEnrolBegin{Token: "not-a-token", Name: "laptop"}
	e.call(proxy, "POST", "/v1/proxies/passkey-enrol/begin", enrol, http.StatusUnauthorized)
	e.call(proxy, "POST", "/v1/proxies/passkey-enrol/finish", wire.MFAAddFinish{ID: "not-a-ceremony"}, http.StatusBadRequest)
	e.call(user, "POST", "/v1/proxies/passkey-enrol/begin", enrol, http.StatusForbidden)
	e.call(user, "POST", "/v1/proxies/passkey-enrol/finish", wire.MFAAddFinish{ID: "not-a-ceremony"}, http.StatusForbidden)
	e.call(proxy, "POST", "/v1/proxies/passkey-enrol/begin", enrol, http.StatusForbidden, fwd...)

	// The user's calls, as the proxy forwards them.
	c := decodeAs[auth.Caller](t, e.call(proxy, "GET", "/v1/web/caller", nil, http.StatusOK, fwd...))
	if c.Kind != auth.KindUser || c.User != "webuser" || !slices.Contains(c.Roles, "access") {
		t.Errorf("the forwarded user's identity: %+v", c)
	}
	if logins := decodeAs[[]string](t, e.call(proxy, "GET", "/v1/web/logins", nil, http.StatusOK, fwd...)); !slices.Equal(logins, []string{"webuser"}) {
		t.Errorf("the forwarded user's logins: %v", logins)
	}
	e.call(proxy, "POST", "/v1/web/logout", WebLogoutRequest{Session: "0123456789abcdef"}, http.StatusOK, fwd...)
	e.call(proxy, "POST", "/v1/web/terminal-resume", auth.WebTerminalResume{Session: "0123456789abcdef", Node: "web1"}, http.StatusOK, fwd...)
	// Never the proxy's own, nor the admin's.
	for _, c := range []*Client{proxy, admin} {
		e.call(c, "GET", "/v1/web/caller", nil, http.StatusForbidden)
		e.call(c, "GET", "/v1/web/logins", nil, http.StatusForbidden)
		e.call(c, "POST", "/v1/web/logout", WebLogoutRequest{}, http.StatusForbidden)
		e.call(c, "POST", "/v1/web/terminal-resume", auth.WebTerminalResume{}, http.StatusForbidden)
	}
	// The player's ranged reads: OpenRecordingAt's authorization and
	// answers (TestSplitProxyWebUI reads a real recording through them).
	e.call(admin, "GET", "/v1/recordings/no-such-recording/file", nil, http.StatusNotFound)
	e.call(admin, "GET", "/v1/recordings/no-such-recording/at?offset=0&length=10", nil, http.StatusNotFound)
	e.call(admin, "GET", "/v1/recordings/no-such-recording/at?offset=-1&length=10", nil, http.StatusBadRequest)
	e.call(admin, "GET", "/v1/recordings/no-such-recording/at?offset=0&length=2000000", nil, http.StatusBadRequest)
	e.call(proxy, "GET", "/v1/recordings/no-such-recording/file", nil, http.StatusForbidden)
	e.call(proxy, "GET", "/v1/recordings/no-such-recording/at?offset=0&length=10", nil, http.StatusForbidden, fwd...)
	// The cluster health page: an admin's (cluster read), not a user's.
	if ch := decodeAs[auth.ClusterHealth](t, e.call(admin, "GET", "/v1/cluster/health", nil, http.StatusOK)); ch.ClusterName != "test" || !ch.Storage.OK {
		t.Errorf("cluster health: %+v", ch)
	}
	e.call(proxy, "GET", "/v1/cluster/health", nil, http.StatusForbidden, fwd...)
	// A lock on the user refuses the identity the proxy forwards.
	lk := decodeAs[wire.CreateLockResult](t, e.call(admin, "POST", "/v1/locks",
		wire.CreateLockRequest{Target: lock.Target{User: "webuser"}, Message: "web-user-locked"}, http.StatusOK))
	if b := e.call(proxy, "GET", "/v1/web/caller", nil, http.StatusForbidden, fwd...); !strings.Contains(string(b), "web-user-locked") {
		t.Errorf("the locked user's identity: %s", b)
	}
	e.call(proxy, "GET", "/v1/web/logins", nil, http.StatusForbidden, fwd...)
	e.call(admin, "DELETE", "/v1/locks/"+lk.Lock.ID, nil, http.StatusOK)
	e.call(proxy, "GET", "/v1/web/caller", nil, http.StatusOK, fwd...)
}

// TestWebRoutesOfASplitProxy: the web routes, each as its caller only.
func TestWebRoutesOfASplitProxy(t *testing.T) {
	e := newEnv(t)
	exerciseWebRoutes(t, e, e.admin())
}
