package web

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/wire"
)

// Auth is what the web UI needs from auth: the methods of auth.Server it
// calls, each deciding on auth's current state. In a process that runs
// auth it is the auth.Server itself (InProcess); a proxy running apart
// from auth implements it over auth's API, calling auth as the signed-in
// user (the certificate auth issued at sign-in, see RequestIdentity), so
// auth, not the proxy, makes every decision.
type Auth interface {
	// Sign-in, sign-up and the web sessions' storage: before a session
	// exists (a proxy's own calls when the proxy runs apart).
	Login(ctx context.Context, req auth.LoginRequest) (*auth.LoginResponse, error)
	BeginSignup(ctx context.Context, req auth.SignupRequest) (*auth.SignupChallenge, error)
	CompleteSignup(ctx context.Context, req auth.SignupRequest) (*auth.LoginResponse, error)
	ConnectorNames(ctx context.Context) ([]string, error)
	BeginSSO(ctx context.Context, req wire.SSOBeginRequest) (*wire.SSOBeginResponse, error)
	ResultOIDC(ctx context.Context, req wire.SSOResultRequest) (*wire.LoginResponse, error)
	BeginPasskeyLogin(ctx context.Context, req wire.PasskeyLoginBegin) (*wire.PasskeyLoginChallenge, error)
	FinishPasskeyLogin(ctx context.Context, req wire.PasskeyLoginFinish) (*wire.PasskeyLoginResult, error)
	BeginHandoffMFAChallenge(ctx context.Context, state string) (*wire.MFAChallenge, error)
	FinishMFAHandoff(ctx context.Context, state string, r wire.MFAResponse) (*wire.PasskeyLoginResult, error)
	BeginEnrolPasskey(ctx context.Context, token, name string) (*wire.MFAAddChallenge, error)
	FinishEnrolPasskey(ctx context.Context, req wire.MFAAddFinish) (*wire.MFADevice, error)
	PutWebSession(ctx context.Context, key string, value []byte, expires time.Time) error
	GetWebSession(ctx context.Context, key string) ([]byte, error)
	DeleteWebSession(ctx context.Context, key string) error

	// The signed-in user's calls.
	CurrentCaller(ctx context.Context, c auth.Caller, via, remote string) (auth.Caller, error)
	AllowedLogins(ctx context.Context, c auth.Caller) ([]string, error)
	RecordWebLogout(ctx context.Context, c auth.Caller, session, remoteAddr string)
	RecordWebTerminalResume(ctx context.Context, c auth.Caller, r auth.WebTerminalResume)
	ListNodes(ctx context.Context, c auth.Caller, filter map[string]string) ([]auth.Node, error)
	SessionMFAStatus(ctx context.Context, c auth.Caller, q auth.SessionMFAQuery) (*wire.SessionMFAStatus, error)
	IssueSessionCert(ctx context.Context, c auth.Caller, req auth.SessionCertRequest) (*wire.SessionCert, error)
	BeginMFAChallenge(ctx context.Context, c auth.Caller) (*wire.MFAChallenge, error)
	ListSessions(ctx context.Context, c auth.Caller) ([]auth.LiveSession, error)
	CreateLock(ctx context.Context, c auth.Caller, req auth.CreateLockRequest) (*auth.CreateLockResult, error)
	ListLocks(ctx context.Context, c auth.Caller) ([]*lock.Lock, error)
	DeleteLock(ctx context.Context, c auth.Caller, id string) error
	ListAccessRequests(ctx context.Context, c auth.Caller) ([]*access.Request, error)
	CreateAccessRequest(ctx context.Context, c auth.Caller, in auth.CreateAccessRequest) (*access.Request, error)
	GetAccessRequest(ctx context.Context, c auth.Caller, id string) (*access.Request, error)
	ReviewAccessRequest(ctx context.Context, c auth.Caller, id string, approve bool, reason string) (*access.Request, error)
	SearchAudit(ctx context.Context, c auth.Caller, q audit.Query) ([]audit.Event, error)
	VerifyAudit(ctx context.Context, c auth.Caller) (*audit.VerifyResult, error)
	ListRecordings(ctx context.Context, c auth.Caller, f auth.RecordingFilter) ([]recording.Info, error)
	SearchRecordings(ctx context.Context, c auth.Caller, text string, limit int) ([]auth.RecordingMatch, error)
	OpenRecording(ctx context.Context, c auth.Caller, id string) (*auth.RecordingStream, error)
	OpenRecordingAt(ctx context.Context, c auth.Caller, id string) (*auth.RecordingFile, error)
	ListMFADevices(ctx context.Context, c auth.Caller) (*wire.MFADevices, error)
	BeginAddMFADevice(ctx context.Context, c auth.Caller, req wire.MFAAddRequest) (*wire.MFAAddChallenge, error)
	FinishAddMFADevice(ctx context.Context, c auth.Caller, req wire.MFAAddFinish) (*wire.MFADevice, error)
	DeleteMFADevice(ctx context.Context, c auth.Caller, name string) error
	RegenerateRecoveryCodes(ctx context.Context, c auth.Caller, r wire.MFAResponse) (*wire.RecoveryCodes, error)

	// Administration.
	ListUsers(ctx context.Context, c auth.Caller) ([]auth.UserInfo, error)
	CreateUser(ctx context.Context, c auth.Caller, req auth.CreateUserRequest) (*auth.InviteResult, error)
	ResetUser(ctx context.Context, c auth.Caller, name string) (*auth.InviteResult, error)
	UpdateUser(ctx context.Context, c auth.Caller, name string, req auth.UpdateUserRequest) (*auth.UserInfo, error)
	DeleteUser(ctx context.Context, c auth.Caller, name string) error
	ListRoles(ctx context.Context, c auth.Caller) ([]*policy.Role, error)
	UpsertRole(ctx context.Context, c auth.Caller, r *policy.Role) error
	DeleteRole(ctx context.Context, c auth.Caller, name string) error
	ListTokens(ctx context.Context, c auth.Caller) ([]auth.Token, error)
	CreateToken(ctx context.Context, c auth.Caller, req auth.CreateTokenRequest) (*auth.TokenResult, error)
	DeleteToken(ctx context.Context, c auth.Caller, tokenOrHint string) error
	ClusterHealth(ctx context.Context, c auth.Caller) (*auth.ClusterHealth, error)

	// The cluster's CAs: the TLS CA (its pin, on the join tokens page)
	// and the SSH host CAs (the web terminal checks the proxy with them).
	TLSCACert() *x509.Certificate
	HostCAPublicKeys() []ssh.PublicKey
}

// InProcess is the Auth of an auth.Server in this process.
func InProcess(a *auth.Server) Auth { return inProcess{a} }

type inProcess struct{ *auth.Server }

func (a inProcess) AllowedLogins(_ context.Context, c auth.Caller) ([]string, error) {
	return a.Server.AllowedLogins(c)
}

func (a inProcess) TLSCACert() *x509.Certificate { return a.Authority().TLSCACert() }

func (a inProcess) HostCAPublicKeys() []ssh.PublicKey {
	return []ssh.PublicKey{a.Authority().HostCAPublicKey()}
}

// Identity is who a request of the web UI is for: the certificate auth
// issued at the session's sign-in (DER) and the browser's address. The
// UI puts it in the context of every signed-in request (RequestIdentity),
// so an Auth that calls auth over the network can call as that user; in
// process it is not needed (the Caller is the certificate's).
type Identity struct {
	Cert       *x509.Certificate
	RemoteAddr string
}

// ErrNotAvailable is returned by an Auth that cannot make a call (a proxy
// running apart from auth, for the pages it does not serve yet).
var ErrNotAvailable = errors.New("not available through a proxy running apart from auth (yet): use a proxy that runs with auth, or the CLI")

// ErrAuthUnreachable is returned by an Auth that could not reach auth:
// nothing was decided, so the request fails (503) but the browser's
// session does not end.
var ErrAuthUnreachable = errors.New("auth is not reachable from this proxy; try again shortly")

type identityKey struct{}

// WithIdentity returns ctx with the identity calls to auth are made for.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// RequestIdentity is the signed-in user's identity a call of the web UI
// is made for (ok false: none, a call before sign-in).
func RequestIdentity(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok && id.Cert != nil
}
