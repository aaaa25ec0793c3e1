package auth

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// IssueProxyWebCert issues the calling proxy a TLS server certificate for
// its HTTPS port, for an ECDSA key: the proxy's identity key is Ed25519,
// which browsers do not accept in TLS, so the web UI of a proxy running
// apart is served with this one (for the same names and addresses, for
// the same time as its other certificates).
func (s *Server) IssueProxyWebCert(ctx context.Context, c Caller, publicKey string) ([]byte, error) {
	if err := s.authorize(c, "IssueProxyWebCert"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	pub, err := parsePublicKey(publicKey)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	key := cryptoPublicKey(pub)
	if _, ok := key.(*ecdsa.PublicKey); !ok {
		return nil, badRequest("the web certificate's key must be ECDSA (browsers accept no Ed25519 in TLS)")
	}
	reg, err := s.GetNodeRegistration(ctx, c.NodeID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && reg.Kind != RegistrationProxy) {
		return nil, fmt.Errorf("%w: proxy %s is no longer registered", ErrUnauthenticated, c.NodeID)
	}
	if err != nil {
		return nil, err
	}
	ttl := ProxyCertTTL
	if s.cfg.NodeCertTTL > 0 && s.cfg.NodeCertTTL < ttl {
		ttl = s.cfg.NodeCertTTL
	}
	der, err := s.issueProxyServer(key, reg.Principals, ttl)
	if err != nil {
		return nil, err
	}
	s.emit(ctx, audit.Event{Event: audit.CertIssued, Node: reg.Name, Success: true,
		Fields: map[string]any{"cert_type": "proxy_web", "proxy_id": reg.ID, "principals": reg.Principals}})
	return der, nil
}

// RemoteRecordingStream is a recording auth streams to a proxy running
// apart (GET /v1/recordings/{id}), for the proxy's web UI: r's reads end
// with the outcome of auth's check (an *recording.AlteredError, which auth
// has audited, instead of io.EOF for an altered recording).
func RemoteRecordingStream(info recording.Info, checked bool, r io.ReadCloser) *RecordingStream {
	return &RecordingStream{Info: info, Checked: checked, r: r, closer: r, altered: func(error) {}}
}

// ProxyBeginPasskeyLogin starts a passkey sign-in at the web UI of the
// calling proxy, for the browser at req.RemoteAddr (throttled by it as in
// process): the challenge and what it is for stay here, in a ceremony
// the proxy knows only by its one-use ID.
func (s *Server) ProxyBeginPasskeyLogin(ctx context.Context, c Caller, req wire.PasskeyLoginBegin) (*wire.PasskeyLoginChallenge, error) {
	if err := s.authorize(c, "ProxyBeginPasskeyLogin"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	if net.ParseIP(req.RemoteAddr) == nil {
		return nil, badRequest("the browser's address must be an IP address")
	}
	return s.BeginPasskeyLogin(ctx, req)
}

// ProxyFinishPasskeyLogin finishes it: the ceremony of req.ID, taken
// once, decides (the same checks as FinishPasskeyLogin), and the
// certificates are for the key the proxy made for the browser's web
// session; the sign-in is audited via "web" with the browser's address.
// The CLI's hand-off (req.State) is ProxyFinishPasskeyHandoff's.
func (s *Server) ProxyFinishPasskeyLogin(ctx context.Context, c Caller, req wire.PasskeyLoginFinish) (*wire.LoginResponse, error) {
	if err := s.authorize(c, "ProxyFinishPasskeyLogin"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	if net.ParseIP(req.RemoteAddr) == nil {
		return nil, badRequest("the browser's address must be an IP address")
	}
	if req.State != "" {
		return nil, badRequest("a hand-off is finished by ProxyFinishPasskeyHandoff")
	}
	req.Via = "web"
	res, err := s.FinishPasskeyLogin(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.Login == nil {
		return nil, errors.New("passkey sign-in: no certificates")
	}
	return res.Login, nil
}

// ProxyFinishPasskeyHandoff finishes, at the web UI of the calling proxy,
// the browser's half of a `warden login --passkey`: the hand-off of
// req.State, kept here, is taken once and decides whose key gets the
// certificates (FinishPasskeyLogin, via "cli", for the browser's
// address). The outcome, well or not, is kept for the CLI; the proxy gets
// only where to send the browser (the CLI's loopback callback), or a
// refusal when there is no such hand-off.
func (s *Server) ProxyFinishPasskeyHandoff(ctx context.Context, c Caller, req wire.PasskeyLoginFinish) (*wire.PasskeyLoginResult, error) {
	if err := s.authorize(c, "ProxyFinishPasskeyHandoff"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	if net.ParseIP(req.RemoteAddr) == nil {
		return nil, badRequest("the browser's address must be an IP address")
	}
	if req.State == "" {
		return nil, badRequest("missing state")
	}
	req.PublicKey = "" // the hand-off's, never the proxy's
	res, err := s.FinishPasskeyLogin(ctx, req)
	if res != nil && res.Redirect != "" {
		// The CLI reads a refusal's reason at its callback.
		return &wire.PasskeyLoginResult{Redirect: res.Redirect}, nil
	}
	if err != nil {
		return nil, err
	}
	return nil, errors.New("passkey hand-off: no redirect")
}

// ProxyBeginHandoffMFAChallenge is, for the web UI of the calling proxy,
// the WebAuthn challenge of the MFA hand-off of state (a `warden mfa ...
// --passkey`): BeginHandoffMFAChallenge, the hand-off and the challenge
// kept here.
func (s *Server) ProxyBeginHandoffMFAChallenge(ctx context.Context, c Caller, state string) (*wire.MFAChallenge, error) {
	if err := s.authorize(c, "ProxyBeginHandoffMFAChallenge"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	return s.BeginHandoffMFAChallenge(ctx, state)
}

// ProxyFinishMFAHandoff finishes it (FinishMFAHandoff: the state taken
// once, the passkey's answer checked here); the outcome, well or not, is
// kept for the CLI, and the proxy gets only where to send the browser.
func (s *Server) ProxyFinishMFAHandoff(ctx context.Context, c Caller, state string, r wire.MFAResponse) (*wire.PasskeyLoginResult, error) {
	if err := s.authorize(c, "ProxyFinishMFAHandoff"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	res, err := s.FinishMFAHandoff(ctx, state, wire.MFAResponse{ChallengeID: r.ChallengeID, WebAuthn: r.WebAuthn})
	if res != nil && res.Redirect != "" {
		return &wire.PasskeyLoginResult{Redirect: res.Redirect}, nil
	}
	if err != nil {
		return nil, err
	}
	return nil, errors.New("MFA hand-off: no redirect")
}

// ProxyBeginEnrolPasskey starts, at the web UI of the calling proxy, the
// first passkey's registration of a user whose password sign-in was
// refused for want of one (the token of that refusal,
// PasskeyEnrolment, which auth gives only to the proxy that signed the
// browser in): BeginEnrolPasskey, the ceremony kept here.
func (s *Server) ProxyBeginEnrolPasskey(ctx context.Context, c Caller, token, name string) (*wire.MFAAddChallenge, error) {
	if err := s.authorize(c, "ProxyBeginEnrolPasskey"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	return s.BeginEnrolPasskey(ctx, token, name)
}

// ProxyFinishEnrolPasskey finishes it (FinishEnrolPasskey: the
// registration ceremony of req.ID, taken once).
func (s *Server) ProxyFinishEnrolPasskey(ctx context.Context, c Caller, req wire.MFAAddFinish) (*wire.MFADevice, error) {
	if err := s.authorize(c, "ProxyFinishEnrolPasskey"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	return s.FinishEnrolPasskey(ctx, req)
}
