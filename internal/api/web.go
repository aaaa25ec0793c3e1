package api

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/wire"
)

// The calls of the web UI served by a proxy running apart from auth
// (service/splitweb.go). Before sign-in the proxy calls as itself: the
// web sessions' storage and the SSO connectors' names are refused to any
// other caller. After sign-in it calls as the signed-in user, forwarding
// the certificate auth issued at sign-in (ForwardAs): auth verifies it
// against the cluster CA, checks it on current state (CurrentCaller) and
// decides each call as for the CLI.

// WebSession is a web UI session's sealed value in auth's storage.
type WebSession struct {
	Value   []byte    `json:"value"`
	Expires time.Time `json:"expires"`
}

// RecordingFileInfo describes a recording opened for ranged reads.
type RecordingFileInfo struct {
	Info recording.Info `json:"info"`
	Size int64          `json:"size"`
}

// maxRecordingRead bounds one ranged read of a recording.
const maxRecordingRead = 1 << 20

// recordingAt answers up to length bytes of a recording from offset (fewer
// at its end), read as OpenRecordingAt reads them.
func (h *Handler) recordingAt(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	off, err1 := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	n, err2 := strconv.Atoi(r.URL.Query().Get("length"))
	if err1 != nil || err2 != nil || off < 0 || n <= 0 || n > maxRecordingRead {
		h.fail(w, fmt.Errorf("%w: offset must be >= 0 and length 1 to %d", auth.ErrBadRequest, maxRecordingRead))
		return
	}
	f, err := h.auth.OpenRecordingAt(r.Context(), c, r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	defer f.Close()
	if off >= f.Size {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		return
	}
	buf := make([]byte, min(int64(n), f.Size-off))
	got, err := f.ReadAt(buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && got == len(buf)) {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf[:got])
}

// WebLoginRequest is a browser's sign-in at a proxy's web UI.
type WebLoginRequest struct {
	Login      auth.LoginRequest `json:"login"`
	RemoteAddr string            `json:"remote_addr"`
}

// WebSSOBegin starts a browser's single sign-on at a proxy's web UI: the
// browser comes back to a path under /web/ on that proxy, not to a CLI's
// loopback listener (which the public /v1/sso/oidc/begin requires).
type WebSSOBegin struct {
	Begin      wire.SSOBeginRequest `json:"begin"`
	RemoteAddr string               `json:"remote_addr"`
}

// WebPasskeyBegin starts a browser's passkey sign-in at a proxy's web UI.
type WebPasskeyBegin struct {
	Begin      wire.PasskeyLoginBegin `json:"begin"`
	RemoteAddr string                 `json:"remote_addr"`
}

// WebPasskeyFinish finishes it.
type WebPasskeyFinish struct {
	Finish     wire.PasskeyLoginFinish `json:"finish"`
	RemoteAddr string                  `json:"remote_addr"`
}

// WebMFAHandoff is the browser's half of an MFA hand-off: its state and,
// at the finish, the passkey's answer.
type WebMFAHandoff struct {
	State    string           `json:"state"`
	Response wire.MFAResponse `json:"response,omitempty"`
}

// WebEnrolBegin starts the first passkey's registration with the token
// of a web sign-in refused for want of one.
type WebEnrolBegin struct {
	Token string `json:"token"`
	Name  string `json:"name"`
}

// WebLogoutRequest audits a sign-out from the web UI.
type WebLogoutRequest struct {
	Session string `json:"session"`
}

// proxyOnly refuses every caller but a proxy calling as itself.
func proxyOnly(c auth.Caller) error {
	if c.Kind != auth.KindProxy {
		return fmt.Errorf("%w: only a Warden proxy calls this", auth.ErrAccessDenied)
	}
	return nil
}

// userOnly refuses every caller but a person.
func userOnly(c auth.Caller) error {
	if c.Kind != auth.KindUser {
		return fmt.Errorf("%w: only a signed-in user calls this", auth.ErrAccessDenied)
	}
	return nil
}

func (h *Handler) webRoutes() {
	m, a := h.mux, h.auth
	m.HandleFunc("PUT /v1/proxies/web-sessions/{key}", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in WebSession) (empty, error) {
		if err := proxyOnly(c); err != nil {
			return empty{}, err
		}
		return done(a.PutWebSession(r.Context(), r.PathValue("key"), in.Value, in.Expires))
	})))
	m.HandleFunc("GET /v1/proxies/web-sessions/{key}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*WebSession, error) {
		if err := proxyOnly(c); err != nil {
			return nil, err
		}
		v, err := a.GetWebSession(r.Context(), r.PathValue("key"))
		if err != nil {
			return nil, err
		}
		return &WebSession{Value: v}, nil
	})))
	m.HandleFunc("DELETE /v1/proxies/web-sessions/{key}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		if err := proxyOnly(c); err != nil {
			return empty{}, err
		}
		return done(a.DeleteWebSession(r.Context(), r.PathValue("key")))
	})))
	// The web UI's sign-in: auth.Server.Login as for the CLI, audited
	// with via "web", throttled by the browser's address (which only a
	// proxy may state).
	m.HandleFunc("POST /v1/proxies/web-login", h.authed(withBodyOr(h, func(r *http.Request, c auth.Caller, in WebLoginRequest) (*auth.LoginResponse, error) {
		if err := proxyOnly(c); err != nil {
			return nil, err
		}
		if net.ParseIP(in.RemoteAddr) == nil {
			return nil, fmt.Errorf("%w: the browser's address must be an IP address", auth.ErrBadRequest)
		}
		in.Login.RemoteAddr, in.Login.Via = in.RemoteAddr, "web"
		return a.Login(r.Context(), in.Login)
	}, func(w http.ResponseWriter, err error) bool {
		// Refused for want of a passkey: the proxy's web UI registers
		// one with the token (ProxyBeginEnrolPasskey).
		var e *auth.PasskeyEnrolment
		if !errors.As(err, &e) {
			return false
		}
		writeJSON(w, http.StatusForbidden, Error{Message: e.Error(), Code: CodePasskeyEnrol, EnrolToken: e.Token})
		return true
	})))
	// The web UI's single sign-on (OIDC or SAML), for the browser's
	// address: only a proxy may ask for a return to its own /web/ path
	// (auth.SSOBeginRequest.Web is never taken from a client's JSON).
	m.HandleFunc("POST /v1/proxies/web-sso/begin", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in WebSSOBegin) (*wire.SSOBeginResponse, error) {
		if err := proxyOnly(c); err != nil {
			return nil, err
		}
		if net.ParseIP(in.RemoteAddr) == nil {
			return nil, fmt.Errorf("%w: the browser's address must be an IP address", auth.ErrBadRequest)
		}
		in.Begin.RemoteAddr, in.Begin.Web = in.RemoteAddr, true
		return a.BeginSSO(r.Context(), in.Begin)
	})))
	// The first passkey's registration, with that token (the token is
	// the authority, for its user, once; the caller a joined proxy).
	m.HandleFunc("POST /v1/proxies/passkey-enrol/begin", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in WebEnrolBegin) (*wire.MFAAddChallenge, error) {
		return a.ProxyBeginEnrolPasskey(r.Context(), c, in.Token, in.Name)
	})))
	m.HandleFunc("POST /v1/proxies/passkey-enrol/finish", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.MFAAddFinish) (*wire.MFADevice, error) {
		return a.ProxyFinishEnrolPasskey(r.Context(), c, in)
	})))
	// The web UI's passkey sign-in: the ceremony lives at auth, and the
	// finish names it by the one-use ID the begin answered.
	m.HandleFunc("POST /v1/proxies/passkey-login/begin", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in WebPasskeyBegin) (*wire.PasskeyLoginChallenge, error) {
		in.Begin.RemoteAddr = in.RemoteAddr
		return a.ProxyBeginPasskeyLogin(r.Context(), c, in.Begin)
	})))
	m.HandleFunc("POST /v1/proxies/passkey-login/finish", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in WebPasskeyFinish) (*auth.LoginResponse, error) {
		in.Finish.RemoteAddr = in.RemoteAddr
		return a.ProxyFinishPasskeyLogin(r.Context(), c, in.Finish)
	})))
	// The browser's half of `warden login --passkey` (a hand-off state
	// auth keeps): the answer is where to send the browser.
	m.HandleFunc("POST /v1/proxies/passkey-login/handoff", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in WebPasskeyFinish) (*wire.PasskeyLoginResult, error) {
		in.Finish.RemoteAddr = in.RemoteAddr
		return a.ProxyFinishPasskeyHandoff(r.Context(), c, in.Finish)
	})))
	// The page of `warden mfa ... --passkey` (an MFA hand-off auth keeps).
	m.HandleFunc("POST /v1/proxies/mfa-handoff/begin", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in WebMFAHandoff) (*wire.MFAChallenge, error) {
		return a.ProxyBeginHandoffMFAChallenge(r.Context(), c, in.State)
	})))
	m.HandleFunc("POST /v1/proxies/mfa-handoff/finish", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in WebMFAHandoff) (*wire.PasskeyLoginResult, error) {
		return a.ProxyFinishMFAHandoff(r.Context(), c, in.State, in.Response)
	})))
	m.HandleFunc("GET /v1/proxies/sso-connectors", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]string, error) {
		if err := proxyOnly(c); err != nil {
			return nil, err
		}
		return list(a.ConnectorNames(r.Context()))
	})))
	// The proxy's certificate for browsers (ECDSA: they refuse Ed25519).
	m.HandleFunc("POST /v1/proxies/web-cert", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in PeerCertRequest) (PeerCertResponse, error) {
		der, err := a.IssueProxyWebCert(r.Context(), c, in.PublicKey)
		return PeerCertResponse{Cert: der}, err
	})))
	// The recording player's ranged reads (OpenRecordingAt): the
	// recording's description, then its bytes a range at a time, each
	// read checked by auth against the recording's block hashes.
	m.HandleFunc("GET /v1/recordings/{id}/file", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*RecordingFileInfo, error) {
		f, err := a.OpenRecordingAt(r.Context(), c, r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return &RecordingFileInfo{Info: f.Info, Size: f.Size}, nil
	})))
	m.HandleFunc("GET /v1/recordings/{id}/at", h.authed(h.recordingAt))
	// The cluster health page's (auth authorizes "cluster read").
	m.HandleFunc("GET /v1/cluster/health", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*auth.ClusterHealth, error) {
		return a.ClusterHealth(r.Context(), c)
	})))
	// The signed-in user's: authed has checked the forwarded certificate
	// on current state (CurrentCaller); the answer is that caller.
	// (A refusal is audited as cert.refused via "api GET /v1/web/caller".)
	m.HandleFunc("GET /v1/web/caller", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (auth.Caller, error) {
		if err := userOnly(c); err != nil {
			return auth.Caller{}, err
		}
		return c, nil
	})))
	m.HandleFunc("GET /v1/web/logins", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]string, error) {
		if err := userOnly(c); err != nil {
			return nil, err
		}
		return list(a.AllowedLogins(c))
	})))
	m.HandleFunc("POST /v1/web/logout", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in WebLogoutRequest) (empty, error) {
		if err := userOnly(c); err != nil {
			return empty{}, err
		}
		a.RecordWebLogout(r.Context(), c, in.Session, remoteIP(r))
		return empty{}, nil
	})))
	m.HandleFunc("POST /v1/web/terminal-resume", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in auth.WebTerminalResume) (empty, error) {
		if err := userOnly(c); err != nil {
			return empty{}, err
		}
		in.RemoteAddr = remoteIP(r)
		a.RecordWebTerminalResume(r.Context(), c, in)
		return empty{}, nil
	})))
}

// PutWebSession stores a web session (a proxy's call).
func (c *Client) PutWebSession(ctx context.Context, key string, value []byte, expires time.Time) error {
	return c.do(ctx, http.MethodPut, "/v1/proxies/web-sessions/"+url.PathEscape(key), WebSession{Value: value, Expires: expires}, nil)
}

// GetWebSession returns a web session's value (a proxy's call).
func (c *Client) GetWebSession(ctx context.Context, key string) ([]byte, error) {
	var out WebSession
	if err := c.do(ctx, http.MethodGet, "/v1/proxies/web-sessions/"+url.PathEscape(key), nil, &out); err != nil {
		return nil, err
	}
	return out.Value, nil
}

// DeleteWebSession ends a web session (a proxy's call).
func (c *Client) DeleteWebSession(ctx context.Context, key string) error {
	return c.do(ctx, http.MethodDelete, "/v1/proxies/web-sessions/"+url.PathEscape(key), nil, nil)
}

// WebLogin signs a browser in at the calling proxy's web UI (a proxy's
// call, for the browser's address).
func (c *Client) WebLogin(ctx context.Context, req auth.LoginRequest, remoteAddr string) (*auth.LoginResponse, error) {
	var out auth.LoginResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/web-login", WebLoginRequest{Login: req, RemoteAddr: remoteAddr}, &out)
}

// WebBeginSSO starts a browser's single sign-on at the calling proxy's web
// UI (a proxy's call, for the browser's address); the browser returns to
// req.ClientRedirect, a path under /web/ on that proxy.
func (c *Client) WebBeginSSO(ctx context.Context, req wire.SSOBeginRequest, remoteAddr string) (*wire.SSOBeginResponse, error) {
	var out wire.SSOBeginResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/web-sso/begin", WebSSOBegin{Begin: req, RemoteAddr: remoteAddr}, &out)
}

// WebBeginPasskeyLogin starts a browser's passkey sign-in at the calling
// proxy's web UI (a proxy's call, for the browser's address).
func (c *Client) WebBeginPasskeyLogin(ctx context.Context, req wire.PasskeyLoginBegin, remoteAddr string) (*wire.PasskeyLoginChallenge, error) {
	var out wire.PasskeyLoginChallenge
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/passkey-login/begin", WebPasskeyBegin{Begin: req, RemoteAddr: remoteAddr}, &out)
}

// WebFinishPasskeyLogin finishes it: the certificates for req.PublicKey.
func (c *Client) WebFinishPasskeyLogin(ctx context.Context, req wire.PasskeyLoginFinish, remoteAddr string) (*auth.LoginResponse, error) {
	var out auth.LoginResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/passkey-login/finish", WebPasskeyFinish{Finish: req, RemoteAddr: remoteAddr}, &out)
}

// WebFinishPasskeyHandoff finishes the browser's half of a
// `warden login --passkey` (req.State): where to send the browser.
func (c *Client) WebFinishPasskeyHandoff(ctx context.Context, req wire.PasskeyLoginFinish, remoteAddr string) (*wire.PasskeyLoginResult, error) {
	var out wire.PasskeyLoginResult
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/passkey-login/handoff", WebPasskeyFinish{Finish: req, RemoteAddr: remoteAddr}, &out)
}

// WebBeginHandoffMFAChallenge is the challenge of the MFA hand-off of
// state, for the page at the calling proxy.
func (c *Client) WebBeginHandoffMFAChallenge(ctx context.Context, state string) (*wire.MFAChallenge, error) {
	var out wire.MFAChallenge
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/mfa-handoff/begin", WebMFAHandoff{State: state}, &out)
}

// WebFinishMFAHandoff finishes it: where to send the browser.
func (c *Client) WebFinishMFAHandoff(ctx context.Context, state string, r wire.MFAResponse) (*wire.PasskeyLoginResult, error) {
	var out wire.PasskeyLoginResult
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/mfa-handoff/finish", WebMFAHandoff{State: state, Response: r}, &out)
}

// WebBeginEnrolPasskey starts the first passkey's registration (a
// proxy's call, with the token auth gave at the refused sign-in).
func (c *Client) WebBeginEnrolPasskey(ctx context.Context, token, name string) (*wire.MFAAddChallenge, error) {
	var out wire.MFAAddChallenge
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/passkey-enrol/begin", WebEnrolBegin{Token: token, Name: name}, &out)
}

// WebFinishEnrolPasskey finishes it.
func (c *Client) WebFinishEnrolPasskey(ctx context.Context, req wire.MFAAddFinish) (*wire.MFADevice, error) {
	var out wire.MFADevice
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/passkey-enrol/finish", req, &out)
}

// SSOConnectorNames are the names of the SSO connectors (a proxy's call).
func (c *Client) SSOConnectorNames(ctx context.Context) ([]string, error) {
	var out []string
	return out, c.do(ctx, http.MethodGet, "/v1/proxies/sso-connectors", nil, &out)
}

// WebCaller is the forwarded user's current identity (ForwardAs).
func (c *Client) WebCaller(ctx context.Context) (auth.Caller, error) {
	var out auth.Caller
	return out, c.do(ctx, http.MethodGet, "/v1/web/caller", nil, &out)
}

// WebLogins are the logins the forwarded user may use now.
func (c *Client) WebLogins(ctx context.Context) ([]string, error) {
	var out []string
	return out, c.do(ctx, http.MethodGet, "/v1/web/logins", nil, &out)
}

// RecordWebLogout audits the forwarded user's sign-out from the web UI.
func (c *Client) RecordWebLogout(ctx context.Context, session string) error {
	return c.do(ctx, http.MethodPost, "/v1/web/logout", WebLogoutRequest{Session: session}, nil)
}

// RecordWebTerminalResume audits the forwarded user's web terminal resume.
func (c *Client) RecordWebTerminalResume(ctx context.Context, r auth.WebTerminalResume) error {
	return c.do(ctx, http.MethodPost, "/v1/web/terminal-resume", r, nil)
}

// ProxyWebCert issues the calling proxy a TLS server certificate (DER)
// for an ECDSA key (an authorized_keys line), for browsers.
func (c *Client) ProxyWebCert(ctx context.Context, publicKey string) ([]byte, error) {
	var out PeerCertResponse
	return out.Cert, c.do(ctx, http.MethodPost, "/v1/proxies/web-cert", PeerCertRequest{PublicKey: publicKey}, &out)
}

// OpenRecordingFile describes a recording for ranged reads (ReadRecordingAt).
func (c *Client) OpenRecordingFile(ctx context.Context, id string) (*RecordingFileInfo, error) {
	var out RecordingFileInfo
	return &out, c.do(ctx, http.MethodGet, "/v1/recordings/"+url.PathEscape(id)+"/file", nil, &out)
}

// ReadRecordingAt reads up to length bytes of a recording from offset.
func (c *Client) ReadRecordingAt(ctx context.Context, id string, offset int64, length int) ([]byte, error) {
	var out rawBody
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}, "length": {strconv.Itoa(length)}}
	return out, c.do(ctx, http.MethodGet, "/v1/recordings/"+url.PathEscape(id)+"/at?"+q.Encode(), nil, &out)
}

// ClusterHealth is the cluster's health (nodes, CAs, storage, audit).
func (c *Client) ClusterHealth(ctx context.Context) (*auth.ClusterHealth, error) {
	var out auth.ClusterHealth
	return &out, c.do(ctx, http.MethodGet, "/v1/cluster/health", nil, &out)
}

// BeginMFAChallenge starts a fresh MFA check of the caller's devices.
func (c *Client) BeginMFAChallenge(ctx context.Context) (*wire.MFAChallenge, error) {
	var out wire.MFAChallenge
	return &out, c.do(ctx, http.MethodPost, "/v1/mfa/challenge", nil, &out)
}

type forwardAsKey struct{}

type forwardAs struct {
	cert *x509.Certificate
	addr string
}

// ForwardAs makes the calls of a proxy's Client with ctx its client's:
// they carry the client's certificate (nil: none) and address in the
// forwarding headers (ForwardHeaders). Auth believes them only from a
// proxy, and verifies the certificate again against the cluster CA.
func ForwardAs(ctx context.Context, cert *x509.Certificate, remoteAddr string) context.Context {
	return context.WithValue(ctx, forwardAsKey{}, forwardAs{cert: cert, addr: remoteAddr})
}

// forwardFrom sets the forwarding headers of req from its context.
func forwardFrom(req *http.Request) {
	if f, ok := req.Context().Value(forwardAsKey{}).(forwardAs); ok {
		ForwardHeaders(req.Header, f.cert, f.addr)
	}
}
