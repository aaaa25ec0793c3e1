package service

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/web"
	"github.com/warden-sh/warden/internal/wire"
)

// The web UI of a proxy running apart from auth (docs/web.md, "A proxy
// running apart"). The pages are this process's; every decision is
// auth's, on its current state, over its API: before sign-in the proxy
// calls as itself (sign-in, sign-up, SSO, the web sessions' storage);
// after sign-in it calls as the signed-in user, forwarding the
// certificate auth issued at sign-in (web.RequestIdentity,
// api.ForwardAs), which auth verifies against the cluster CA and checks
// with CurrentCaller like any client's. The web terminal connects to
// this proxy's SSH side in process, as the in-process UI does, so a node
// whose tunnel ends at another proxy is reached through peering.

// mountWeb serves the web UI under web.Prefix of mux.
func (s *splitProxy) mountWeb(mux *http.ServeMux) error {
	p := s.p
	ui, err := web.New(web.Config{Remote: &splitWebAuth{s: s}, ProxyAddr: p.ProxyAddr, Logger: s.log.With("service", "web"),
		Version: api.Version, ResumeGrace: p.cfg.Proxy.WebTerminalResumeGrace,
		DialProxy: func(_ context.Context, clientAddr string, data bool) (net.Conn, error) {
			return s.srv.DialLocal(clientAddr, data)
		},
		RedeemData: s.srv.RedeemLocal,
		JoinKube: func(ctx context.Context, c auth.Caller, remoteAddr, id, mode string) (web.KubeParticipant, error) {
			kp, err := s.srv.JoinKube(ctx, c, remoteAddr, id, mode)
			if err != nil {
				return nil, err
			}
			return kp, nil
		}})
	if err != nil {
		return err
	}
	mux.Handle(web.Prefix, ui)
	p.wg.Add(1)
	go func() { defer p.wg.Done(); s.keepWebCert(p.base) }()
	return nil
}

// serverCert is the HTTPS certificate for a client: the proxy's own
// (Ed25519, its identity key) for clients that accept it (warden, Go),
// else the ECDSA one auth issued for browsers, which accept no Ed25519.
func (s *splitProxy) serverCert(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	own := s.srvCert.Load()
	if hello.SupportsCertificate(own) == nil {
		return own, nil
	}
	if wc := s.webCert.Load(); wc != nil {
		return wc, nil
	}
	return own, nil
}

// keepWebCert keeps the browsers' certificate (auth.IssueProxyWebCert,
// for an ECDSA key made here and kept in memory only): fetched at start,
// tried again every second until it is, and renewed in the last third of
// its life.
func (s *splitProxy) keepWebCert(ctx context.Context) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.log.Error("web: certificate key", "err", err)
		return
	}
	sshPub, err := ssh.NewPublicKey(&key.PublicKey)
	if err != nil {
		s.log.Error("web: certificate key", "err", err)
		return
	}
	line := string(ssh.MarshalAuthorizedKey(sshPub))
	for {
		wait := identityCheckEvery
		cur := s.webCert.Load()
		if cur == nil || time.Until(cur.Leaf.NotAfter) < cur.Leaf.NotAfter.Sub(cur.Leaf.NotBefore)/3 {
			var der []byte
			err := s.call(ctx, func(c *api.Client) error {
				var err error
				der, err = c.ProxyWebCert(ctx, line)
				return err
			})
			var leaf *x509.Certificate
			if err == nil {
				leaf, err = x509.ParseCertificate(der)
			}
			if err == nil {
				s.webCert.Store(&tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf})
			} else if ctx.Err() == nil {
				s.log.Warn("web: the browsers' certificate", "err", err)
				if cur == nil {
					wait = time.Second
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// splitWebAuth is web.Auth over auth's API.
type splitWebAuth struct{ s *splitProxy }

var _ web.Auth = (*splitWebAuth)(nil)

// remoteError is auth's refusal as the web UI tells refusals apart: the
// message auth gave, wrapping the error its status stands for.
type remoteError struct {
	kind error
	msg  string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// fromAPI turns auth's answer into the error auth.Server would have
// returned in process (the web UI picks status and message from it).
func fromAPI(err error) error {
	var ae *api.Error
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if !errors.As(err, &ae) {
		// Auth was not reached: nothing was decided.
		return fmt.Errorf("%w (%v)", web.ErrAuthUnreachable, err)
	}
	if ae.Status == http.StatusBadGateway || ae.Status == http.StatusServiceUnavailable {
		return fmt.Errorf("%w (%s)", web.ErrAuthUnreachable, ae.Message)
	}
	var kind error
	switch ae.Status {
	case http.StatusUnauthorized:
		kind = auth.ErrUnauthenticated
	case http.StatusForbidden:
		kind = auth.ErrAccessDenied
	case http.StatusBadRequest:
		kind = auth.ErrBadRequest
	case http.StatusNotFound:
		kind = storage.ErrNotFound
	case http.StatusConflict:
		kind = auth.ErrConflict
	case http.StatusTooManyRequests:
		kind = auth.ErrThrottled
	default:
		return err
	}
	return &remoteError{kind: kind, msg: ae.Message}
}

// asProxy calls auth as this proxy, for a client at remoteAddr ("": the
// proxy's own call).
func (a *splitWebAuth) asProxy(ctx context.Context, remoteAddr string, fn func(context.Context, *api.Client) error) error {
	if remoteAddr != "" {
		ctx = api.ForwardAs(ctx, nil, remoteAddr)
	}
	return fromAPI(a.s.call(ctx, func(c *api.Client) error { return fn(ctx, c) }))
}

// asUser calls auth as the signed-in user of the request: without the
// certificate auth issued at sign-in there is no call (fail closed).
func (a *splitWebAuth) asUser(ctx context.Context, fn func(context.Context, *api.Client) error) error {
	id, ok := web.RequestIdentity(ctx)
	if !ok {
		return fmt.Errorf("%w: this web session has no certificate from auth; sign in again", auth.ErrUnauthenticated)
	}
	addr := id.RemoteAddr
	if addr == "" {
		addr = "unknown"
	}
	ctx = api.ForwardAs(ctx, id.Cert, addr)
	return fromAPI(a.s.call(ctx, func(c *api.Client) error { return fn(ctx, c) }))
}

// userCall is asUser for a call with a result.
func userCall[T any](a *splitWebAuth, ctx context.Context, fn func(context.Context, *api.Client) (T, error)) (T, error) {
	var out T
	err := a.asUser(ctx, func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = fn(ctx, c)
		return err
	})
	return out, err
}

// Before sign-in: the proxy's calls, for the browser's address (sign-in
// states it in the body of a proxy-only call, so auth audits it as the
// web's; the others forward it as a client's).

func (a *splitWebAuth) Login(ctx context.Context, req auth.LoginRequest) (*auth.LoginResponse, error) {
	var out *auth.LoginResponse
	var enrol *auth.PasskeyEnrolment
	err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.WebLogin(ctx, req, req.RemoteAddr)
		var ae *api.Error
		if errors.As(err, &ae) && ae.Status == http.StatusForbidden && ae.Code == api.CodePasskeyEnrol && ae.EnrolToken != "" {
			enrol = &auth.PasskeyEnrolment{User: req.User, Token: ae.EnrolToken}
		}
		return err
	})
	if enrol != nil {
		// The page that registers the first passkey, with auth's token.
		return nil, enrol
	}
	return out, err
}

func (a *splitWebAuth) BeginSignup(ctx context.Context, req auth.SignupRequest) (*auth.SignupChallenge, error) {
	var out *auth.SignupChallenge
	err := a.asProxy(ctx, req.RemoteAddr, func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.BeginSignup(ctx, req.Token)
		return err
	})
	return out, err
}

func (a *splitWebAuth) CompleteSignup(ctx context.Context, req auth.SignupRequest) (*auth.LoginResponse, error) {
	var out *auth.LoginResponse
	err := a.asProxy(ctx, req.RemoteAddr, func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.CompleteSignup(ctx, req)
		return err
	})
	return out, err
}

func (a *splitWebAuth) ConnectorNames(ctx context.Context) ([]string, error) {
	var out []string
	err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.SSOConnectorNames(ctx)
		return err
	})
	return out, err
}

func (a *splitWebAuth) BeginSSO(ctx context.Context, req wire.SSOBeginRequest) (*wire.SSOBeginResponse, error) {
	var out *wire.SSOBeginResponse
	// The proxy-only begin: the public one takes a CLI's loopback
	// callback only, not this proxy's /web/ path.
	err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.WebBeginSSO(ctx, req, req.RemoteAddr)
		return err
	})
	return out, err
}

func (a *splitWebAuth) ResultOIDC(ctx context.Context, req wire.SSOResultRequest) (*wire.LoginResponse, error) {
	var out *wire.LoginResponse
	err := a.asProxy(ctx, req.RemoteAddr, func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.ResultOIDC(ctx, req)
		return err
	})
	return out, err
}

func (a *splitWebAuth) PutWebSession(ctx context.Context, key string, value []byte, expires time.Time) error {
	return a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error { return c.PutWebSession(ctx, key, value, expires) })
}

func (a *splitWebAuth) GetWebSession(ctx context.Context, key string) ([]byte, error) {
	var out []byte
	err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.GetWebSession(ctx, key)
		return err
	})
	return out, err
}

func (a *splitWebAuth) DeleteWebSession(ctx context.Context, key string) error {
	return a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error { return c.DeleteWebSession(ctx, key) })
}

// Passkey sign-in: auth's ceremony, begun and finished by this proxy for
// the browser's address (proxy-only calls); auth keeps the challenge and
// takes it once, by the ID its begin answered. The first passkey's
// registration, when auth refuses a password sign-in for want of one, is
// begun with the token auth gave this proxy with that refusal. The
// browser's half of `warden login --passkey` and of `warden mfa ...
// --passkey` is relayed the same way, auth taking the hand-off's state.

func (a *splitWebAuth) BeginPasskeyLogin(ctx context.Context, req wire.PasskeyLoginBegin) (*wire.PasskeyLoginChallenge, error) {
	var out *wire.PasskeyLoginChallenge
	err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.WebBeginPasskeyLogin(ctx, req, req.RemoteAddr)
		return err
	})
	return out, err
}

func (a *splitWebAuth) FinishPasskeyLogin(ctx context.Context, req wire.PasskeyLoginFinish) (*wire.PasskeyLoginResult, error) {
	if req.State != "" {
		// `warden login --passkey`: auth takes the hand-off and answers
		// where the browser goes (the CLI's callback).
		var out *wire.PasskeyLoginResult
		err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
			var err error
			out, err = c.WebFinishPasskeyHandoff(ctx, req, req.RemoteAddr)
			return err
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	var out *auth.LoginResponse
	err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.WebFinishPasskeyLogin(ctx, req, req.RemoteAddr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &wire.PasskeyLoginResult{Login: out}, nil
}

func (a *splitWebAuth) BeginHandoffMFAChallenge(ctx context.Context, state string) (*wire.MFAChallenge, error) {
	var out *wire.MFAChallenge
	err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.WebBeginHandoffMFAChallenge(ctx, state)
		return err
	})
	return out, err
}

func (a *splitWebAuth) FinishMFAHandoff(ctx context.Context, state string, r wire.MFAResponse) (*wire.PasskeyLoginResult, error) {
	var out *wire.PasskeyLoginResult
	err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.WebFinishMFAHandoff(ctx, state, r)
		return err
	})
	return out, err
}

func (a *splitWebAuth) BeginEnrolPasskey(ctx context.Context, token, name string) (*wire.MFAAddChallenge, error) {
	var out *wire.MFAAddChallenge
	err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.WebBeginEnrolPasskey(ctx, token, name)
		return err
	})
	return out, err
}

func (a *splitWebAuth) FinishEnrolPasskey(ctx context.Context, req wire.MFAAddFinish) (*wire.MFADevice, error) {
	var out *wire.MFADevice
	err := a.asProxy(ctx, "", func(ctx context.Context, c *api.Client) error {
		var err error
		out, err = c.WebFinishEnrolPasskey(ctx, req)
		return err
	})
	return out, err
}

// The signed-in user's calls: auth decides from the forwarded
// certificate, not from the Caller the UI passes (which auth alone
// issued, but which this process could alter).

func (a *splitWebAuth) CurrentCaller(ctx context.Context, c auth.Caller, _, remote string) (auth.Caller, error) {
	id, ok := web.RequestIdentity(ctx)
	if !ok {
		return auth.Caller{}, fmt.Errorf("%w: this web session has no certificate from auth; sign in again", auth.ErrUnauthenticated)
	}
	id.RemoteAddr = remote
	cur, err := userCall(a, web.WithIdentity(ctx, id), func(ctx context.Context, cl *api.Client) (auth.Caller, error) {
		return cl.WebCaller(ctx)
	})
	if err != nil {
		return auth.Caller{}, err
	}
	// Auth answers for the certificate's user, who is the session's.
	if cur.Kind != auth.KindUser || cur.User != c.User {
		return auth.Caller{}, fmt.Errorf("%w: auth answered for another caller", auth.ErrAccessDenied)
	}
	return cur, nil
}

func (a *splitWebAuth) AllowedLogins(ctx context.Context, _ auth.Caller) ([]string, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]string, error) { return c.WebLogins(ctx) })
}

func (a *splitWebAuth) RecordWebLogout(ctx context.Context, _ auth.Caller, session, _ string) {
	if err := a.asUser(ctx, func(ctx context.Context, c *api.Client) error { return c.RecordWebLogout(ctx, session) }); err != nil {
		a.s.log.Warn("web: audit the sign-out", "err", err)
	}
}

func (a *splitWebAuth) RecordWebTerminalResume(ctx context.Context, _ auth.Caller, r auth.WebTerminalResume) {
	if err := a.asUser(ctx, func(ctx context.Context, c *api.Client) error { return c.RecordWebTerminalResume(ctx, r) }); err != nil {
		a.s.log.Warn("web: audit the terminal resume", "err", err)
	}
}

func (a *splitWebAuth) ListNodes(ctx context.Context, _ auth.Caller, filter map[string]string) ([]auth.Node, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]auth.Node, error) { return c.ListNodes(ctx, filter) })
}

func (a *splitWebAuth) SessionMFAStatus(ctx context.Context, _ auth.Caller, q auth.SessionMFAQuery) (*wire.SessionMFAStatus, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*wire.SessionMFAStatus, error) {
		return c.SessionMFAStatus(ctx, q)
	})
}

func (a *splitWebAuth) IssueSessionCert(ctx context.Context, _ auth.Caller, req auth.SessionCertRequest) (*wire.SessionCert, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*wire.SessionCert, error) {
		return c.IssueSessionCert(ctx, req)
	})
}

func (a *splitWebAuth) BeginMFAChallenge(ctx context.Context, _ auth.Caller) (*wire.MFAChallenge, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*wire.MFAChallenge, error) { return c.BeginMFAChallenge(ctx) })
}

func (a *splitWebAuth) ListSessions(ctx context.Context, _ auth.Caller) ([]auth.LiveSession, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]auth.LiveSession, error) { return c.ListSessions(ctx) })
}

func (a *splitWebAuth) CreateLock(ctx context.Context, _ auth.Caller, req auth.CreateLockRequest) (*auth.CreateLockResult, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*auth.CreateLockResult, error) {
		return c.CreateLock(ctx, req)
	})
}

func (a *splitWebAuth) ListLocks(ctx context.Context, _ auth.Caller) ([]*lock.Lock, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]*lock.Lock, error) { return c.ListLocks(ctx) })
}

func (a *splitWebAuth) DeleteLock(ctx context.Context, _ auth.Caller, id string) error {
	return a.asUser(ctx, func(ctx context.Context, c *api.Client) error { return c.DeleteLock(ctx, id) })
}

func (a *splitWebAuth) ListAccessRequests(ctx context.Context, _ auth.Caller) ([]*access.Request, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]*access.Request, error) {
		return c.ListAccessRequests(ctx)
	})
}

func (a *splitWebAuth) CreateAccessRequest(ctx context.Context, _ auth.Caller, in auth.CreateAccessRequest) (*access.Request, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*access.Request, error) {
		return c.CreateAccessRequest(ctx, in)
	})
}

func (a *splitWebAuth) GetAccessRequest(ctx context.Context, _ auth.Caller, id string) (*access.Request, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*access.Request, error) {
		return c.GetAccessRequest(ctx, id)
	})
}

func (a *splitWebAuth) ReviewAccessRequest(ctx context.Context, _ auth.Caller, id string, approve bool, reason string) (*access.Request, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*access.Request, error) {
		return c.ReviewAccessRequest(ctx, id, approve, reason)
	})
}

func (a *splitWebAuth) SearchAudit(ctx context.Context, _ auth.Caller, q audit.Query) ([]audit.Event, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]audit.Event, error) { return c.SearchAudit(ctx, q) })
}

func (a *splitWebAuth) VerifyAudit(ctx context.Context, _ auth.Caller) (*audit.VerifyResult, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*audit.VerifyResult, error) { return c.VerifyAudit(ctx) })
}

func (a *splitWebAuth) ListRecordings(ctx context.Context, _ auth.Caller, f auth.RecordingFilter) ([]recording.Info, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]recording.Info, error) {
		return c.ListRecordings(ctx, f.User, f.Node, f.Since)
	})
}

func (a *splitWebAuth) SearchRecordings(ctx context.Context, _ auth.Caller, text string, limit int) ([]auth.RecordingMatch, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]auth.RecordingMatch, error) {
		return c.SearchRecordings(ctx, text, limit)
	})
}

// OpenRecording streams a recording from auth as the signed-in user
// (the download, the search in one recording): auth checks the bytes
// against the recording's SHA-256 as they go, and the stream ends with
// the outcome (api.RecordingBody).
func (a *splitWebAuth) OpenRecording(ctx context.Context, _ auth.Caller, id string) (*auth.RecordingStream, error) {
	fi, err := userCall(a, ctx, func(ctx context.Context, c *api.Client) (*api.RecordingFileInfo, error) {
		return c.OpenRecordingFile(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	body, err := userCall(a, ctx, func(ctx context.Context, c *api.Client) (*api.RecordingBody, error) {
		return c.OpenRecording(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	return auth.RemoteRecordingStream(fi.Info, fi.Info.Complete, body), nil
}

// OpenRecordingAt opens a recording for the player: each read is a
// ranged read of auth (GET /v1/recordings/{id}/at) as the signed-in user,
// which auth authorizes and checks against the recording's block hashes.
func (a *splitWebAuth) OpenRecordingAt(ctx context.Context, _ auth.Caller, id string) (*auth.RecordingFile, error) {
	fi, err := userCall(a, ctx, func(ctx context.Context, c *api.Client) (*api.RecordingFileInfo, error) {
		return c.OpenRecordingFile(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	ra := &remoteRecording{a: a, ctx: ctx, id: id, size: fi.Size}
	return &auth.RecordingFile{Info: fi.Info, ReaderAt: ra, Closer: io.NopCloser(nil), Size: fi.Size}, nil
}

// remoteRecording reads a recording from auth, a range at a time.
type remoteRecording struct {
	a    *splitWebAuth
	ctx  context.Context
	id   string
	size int64
}

// maxRemoteRead is the most one read asks auth for (its limit).
const maxRemoteRead = 1 << 20

func (r *remoteRecording) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		at := off + int64(n)
		if at >= r.size {
			return n, io.EOF
		}
		want := min(len(p)-n, maxRemoteRead)
		b, err := userCall(r.a, r.ctx, func(ctx context.Context, c *api.Client) ([]byte, error) {
			return c.ReadRecordingAt(ctx, r.id, at, want)
		})
		if err != nil {
			return n, err
		}
		if len(b) == 0 || len(b) > want {
			return n, io.ErrUnexpectedEOF
		}
		n += copy(p[n:], b)
	}
	return n, nil
}

func (a *splitWebAuth) ListMFADevices(ctx context.Context, _ auth.Caller) (*wire.MFADevices, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*wire.MFADevices, error) { return c.ListMFADevices(ctx) })
}

func (a *splitWebAuth) BeginAddMFADevice(ctx context.Context, _ auth.Caller, req wire.MFAAddRequest) (*wire.MFAAddChallenge, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*wire.MFAAddChallenge, error) {
		return c.BeginAddMFADevice(ctx, req)
	})
}

func (a *splitWebAuth) FinishAddMFADevice(ctx context.Context, _ auth.Caller, req wire.MFAAddFinish) (*wire.MFADevice, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*wire.MFADevice, error) {
		return c.FinishAddMFADevice(ctx, req)
	})
}

func (a *splitWebAuth) DeleteMFADevice(ctx context.Context, _ auth.Caller, name string) error {
	return a.asUser(ctx, func(ctx context.Context, c *api.Client) error { return c.DeleteMFADevice(ctx, name) })
}

func (a *splitWebAuth) RegenerateRecoveryCodes(ctx context.Context, _ auth.Caller, r wire.MFAResponse) (*wire.RecoveryCodes, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*wire.RecoveryCodes, error) {
		return c.RegenerateRecoveryCodes(ctx, r)
	})
}

func (a *splitWebAuth) ListUsers(ctx context.Context, _ auth.Caller) ([]auth.UserInfo, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]auth.UserInfo, error) { return c.ListUsers(ctx) })
}

func (a *splitWebAuth) CreateUser(ctx context.Context, _ auth.Caller, req auth.CreateUserRequest) (*auth.InviteResult, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*auth.InviteResult, error) {
		return c.CreateUser(ctx, req)
	})
}

func (a *splitWebAuth) ResetUser(ctx context.Context, _ auth.Caller, name string) (*auth.InviteResult, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*auth.InviteResult, error) { return c.ResetUser(ctx, name) })
}

func (a *splitWebAuth) UpdateUser(ctx context.Context, _ auth.Caller, name string, req auth.UpdateUserRequest) (*auth.UserInfo, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*auth.UserInfo, error) {
		return c.UpdateUser(ctx, name, req)
	})
}

func (a *splitWebAuth) DeleteUser(ctx context.Context, _ auth.Caller, name string) error {
	return a.asUser(ctx, func(ctx context.Context, c *api.Client) error { return c.DeleteUser(ctx, name) })
}

func (a *splitWebAuth) ListRoles(ctx context.Context, _ auth.Caller) ([]*policy.Role, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]*policy.Role, error) { return c.ListRoles(ctx) })
}

func (a *splitWebAuth) UpsertRole(ctx context.Context, _ auth.Caller, r *policy.Role) error {
	return a.asUser(ctx, func(ctx context.Context, c *api.Client) error { return c.UpsertRole(ctx, r) })
}

func (a *splitWebAuth) DeleteRole(ctx context.Context, _ auth.Caller, name string) error {
	return a.asUser(ctx, func(ctx context.Context, c *api.Client) error { return c.DeleteRole(ctx, name) })
}

func (a *splitWebAuth) ListTokens(ctx context.Context, _ auth.Caller) ([]auth.Token, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) ([]auth.Token, error) { return c.ListTokens(ctx) })
}

func (a *splitWebAuth) CreateToken(ctx context.Context, _ auth.Caller, req auth.CreateTokenRequest) (*auth.TokenResult, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*auth.TokenResult, error) { return c.CreateToken(ctx, req) })
}

func (a *splitWebAuth) DeleteToken(ctx context.Context, _ auth.Caller, tokenOrHint string) error {
	return a.asUser(ctx, func(ctx context.Context, c *api.Client) error { return c.DeleteToken(ctx, tokenOrHint) })
}

func (a *splitWebAuth) ClusterHealth(ctx context.Context, _ auth.Caller) (*auth.ClusterHealth, error) {
	return userCall(a, ctx, func(ctx context.Context, c *api.Client) (*auth.ClusterHealth, error) { return c.ClusterHealth(ctx) })
}

// The cluster's CAs, from the proxy's identity (given by auth at join
// and renewal).

func (a *splitWebAuth) TLSCACert() *x509.Certificate {
	var cert *x509.Certificate
	err := errors.New("no PEM certificate")
	if block, _ := pem.Decode([]byte(a.s.id.Load().TLSCA)); block != nil {
		cert, err = x509.ParseCertificate(block.Bytes)
	}
	if err != nil {
		// Not reached: the proxy started with this identity's CA.
		a.s.log.Error("web: the TLS CA of the proxy identity", "err", err)
		return &x509.Certificate{}
	}
	return cert
}

func (a *splitWebAuth) HostCAPublicKeys() []ssh.PublicKey {
	keys, err := idfile.ParseAuthorizedKeys(a.s.id.Load().HostCAs)
	if err != nil {
		a.s.log.Error("web: the host CAs of the proxy identity", "err", err)
		return nil
	}
	return keys
}
