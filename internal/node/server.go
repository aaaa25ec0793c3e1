// Package node is the SSH server of the Warden node agent, replacing sshd on
// a server.
//
// It accepts only SSH user certificates signed by a trusted Warden user CA,
// asks an Authorizer (the policy decision made elsewhere) what the user may
// do, and then serves sessions as the requested OS user: PTY shells, exec,
// the SFTP subsystem (run in a re-executed child process with the user's
// credentials, so files are never served as root), signals, and local and
// remote port forwarding when permitted. Sessions end when the certificate
// expires. Every security-relevant step is an audit event.
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/quickack"
	"golang.org/x/crypto/ssh"
)

// Authorizer decides what an authenticated certificate holder may do.
type Authorizer interface {
	// Authorize is called after the client's certificate was verified as a
	// valid user certificate from one of Config.UserCAs for principal Login.
	// It returns the permissions or an error whose Error() is a short reason
	// safe to show the user (e.g. `login "root" is not allowed on node "web1"
	// by your roles`).
	Authorize(ctx context.Context, req AuthzRequest) (*Permissions, error)
}

// AuthzRequest is the input of Authorizer.Authorize.
type AuthzRequest struct {
	Cert       *ssh.Certificate
	Login      string
	RemoteAddr net.Addr
	// Join is set when the login is the user's internal principal: the
	// connection may only join other sessions (no OS account).
	Join bool
}

// Permissions is what an authorized user may do on this connection.
type Permissions struct {
	User           string
	Roles          []string
	PortForwarding bool
	FileTransfer   bool
	PTY            bool
	ForwardAgent   bool
	// Expires is when the connection must end (certificate expiry); zero
	// means no limit beyond the certificate's own validity.
	Expires time.Time
	// RecordMode is how PTY sessions are recorded: RecordOff,
	// RecordBestEffort ("" too) or RecordStrict (refuse or end the session
	// when it cannot be recorded). Unknown values count as strict.
	RecordMode string
	// RecordInput records what the user types as well as the output.
	RecordInput bool
	// KeepAfterCertExpiry lets sessions outlive the certificate (role
	// option disconnect_expired_cert: false); by default they end with it.
	KeepAfterCertExpiry bool
	// IdleTimeout ends the connection after this long without session
	// data (0: never).
	IdleTimeout time.Duration
	// JoinOnly connections may only join other users' sessions.
	JoinOnly bool
	// Identity is the authorizer's own description of the caller, opaque
	// to the node and handed back in ConnInfo, so that re-verifying live
	// connections (a lock, a role change) need not decode it again.
	Identity any
}

// Config configures a Server.
type Config struct {
	// HostSigners are the host certificate signer(s) presented to clients.
	HostSigners []ssh.Signer
	// UserCAs returns the currently trusted user CA keys.
	UserCAs    func() []ssh.PublicKey
	Authorizer Authorizer
	Audit      audit.Emitter
	NodeName   string
	NodeID     string
	Now        func() time.Time
	Logger     *slog.Logger
	// MaxAuthTries is the number of failed authentication attempts per
	// connection (default 6).
	MaxAuthTries int
	// MaxSessionsPerConn bounds concurrently open session channels per
	// connection (default 10).
	MaxSessionsPerConn int
	// HandshakeTimeout bounds the SSH handshake including authentication
	// (default 20s).
	HandshakeTimeout time.Duration
	// ChildCommand re-executes this binary for child helpers (the SFTP
	// server); default [os.Executable()]. The binary must call
	// MaybeRunChild first thing in main.
	ChildCommand []string
	// Recorder records interactive (PTY) sessions; nil never records (and
	// refuses sessions whose roles require strict recording).
	Recorder Recorder
	// JoinPolicy allows joining live sessions; nil refuses every join.
	JoinPolicy JoinPolicy
	// SessionCgroups is CgroupsAuto (""): each shell or command session's
	// processes run in a cgroup of their own where the node may create one
	// (root, cgroup v2), so that revoking access ends every process the
	// session started; or CgroupsOff.
	SessionCgroups string
}

// Defaults for zero Config fields.
const (
	defaultMaxAuthTries       = 6
	defaultMaxSessionsPerConn = 10
	defaultHandshakeTimeout   = 20 * time.Second
	maxForwardChannels        = 256
	maxRemoteForwards         = 16
)

// Server is the node's SSH server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	uid      int
	procUser string

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	live      map[string]*session // joinable sessions by id
	// closing is cancelled when the server closes.
	closing context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup

	sessions atomic.Int64
	cgroups  *cgroupHier // nil: sessions are ended by process group only

	detMu    sync.Mutex
	detached map[string]*detachedJobs // by session id
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if len(cfg.HostSigners) == 0 {
		return nil, errors.New("node: at least one host signer is required")
	}
	if err := ca.ServerConfig(&ssh.ServerConfig{}, cfg.HostSigners...); err != nil {
		return nil, fmt.Errorf("node: host keys: %w", err)
	}
	if cfg.UserCAs == nil {
		return nil, errors.New("node: UserCAs is required")
	}
	if cfg.Authorizer == nil {
		return nil, errors.New("node: Authorizer is required")
	}
	if cfg.Audit == nil {
		return nil, errors.New("node: Audit emitter is required")
	}
	if cfg.NodeName == "" {
		return nil, errors.New("node: NodeName is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxAuthTries <= 0 {
		cfg.MaxAuthTries = defaultMaxAuthTries
	}
	if cfg.MaxSessionsPerConn <= 0 {
		cfg.MaxSessionsPerConn = defaultMaxSessionsPerConn
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if len(cfg.ChildCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("node: find own executable for child helpers: %w", err)
		}
		cfg.ChildCommand = []string{exe}
	}
	cur, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("node: current user: %w", err)
	}
	var cg *cgroupHier
	switch cfg.SessionCgroups {
	case "", CgroupsAuto:
		cg, err = detectCgroups()
		if err != nil {
			cgroupsLogOnce.Do(func() {
				cfg.Logger.Info("session cgroups are unavailable; a revoked session's processes are ended by process group only", slog.Any("reason", err))
			})
		}
	case CgroupsOff:
	default:
		return nil, fmt.Errorf("node: session cgroups must be %q or %q, not %q", CgroupsAuto, CgroupsOff, cfg.SessionCgroups)
	}
	srv := &Server{
		cgroups:   cg,
		cfg:       cfg,
		log:       cfg.Logger.With(slog.String("component", "node"), slog.String("node", cfg.NodeName)),
		uid:       os.Geteuid(),
		procUser:  cur.Username,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		detached:  make(map[string]*detachedJobs),
	}
	srv.closing, srv.stop = context.WithCancel(context.Background())
	return srv, nil
}

// Serve accepts connections on ln until Close is called, then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", slog.Any("err", err), slog.Duration("backoff", backoff))
				select {
				case <-time.After(backoff):
				case <-s.closing.Done():
					return nil
				}
				continue
			}
			return fmt.Errorf("node: accept: %w", err)
		}
		backoff = 0
		go s.HandleConn(context.Background(), c)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops accepting connections, ends all sessions and waits for their
// goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.stop()
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return errors.Join(errs...)
}

// ActiveSessions is the number of open session channels.
func (s *Server) ActiveSessions() int { return int(s.sessions.Load()) }

// HandleConn serves one already-accepted connection (for example a reverse
// tunnel) and returns when it ends. It closes c.
func (s *Server) HandleConn(ctx context.Context, c net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	// Without a goroutine of its own: a node may end a thousand connections at once.
	stopOnClose := context.AfterFunc(s.closing, cancel)
	defer stopOnClose()

	remote := c.RemoteAddr()
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(quickack.Wrap(c), s.serverConfig(ctx))
	if err != nil {
		c.Close()
		s.log.Debug("handshake failed", slog.String("remote_addr", addrString(remote)), slog.Any("err", err))
		return
	}
	_ = c.SetDeadline(time.Time{})

	ai, ok := sconn.Permissions.ExtraData[authInfoKey{}].(*authInfo)
	if !ok {
		// Unreachable: every successful auth path sets authInfo.
		sconn.Close()
		return
	}
	cn := &conn{
		started:  time.Now(),
		srv:      s,
		sconn:    sconn,
		auth:     ai,
		remote:   addrString(remote),
		cancel:   cancel,
		sessions: make(map[*session]struct{}),
		remotes:  make(map[string]net.Listener),
	}
	cn.log = s.log.With(slog.String("user", ai.perms.User), slog.String("login", ai.login), slog.String("remote_addr", cn.remote))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sconn.Close()
		return
	}
	s.conns[cn] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, cn)
		s.mu.Unlock()
	}()

	cn.log.Info("connection authenticated")
	cn.serve(ctx, chans, reqs)
}

// emit records an audit event, filling the common fields. Failures are
// logged: a broken audit sink must not take sessions down with it.
func (s *Server) emit(ctx context.Context, ev audit.Event) {
	ev.Time = s.cfg.Now().UTC()
	if ev.ID == "" {
		ev.ID = newID()
	}
	ev.Node = s.cfg.NodeName
	if s.cfg.NodeID != "" {
		if ev.Fields == nil {
			ev.Fields = make(map[string]any)
		}
		ev.Fields["node_id"] = s.cfg.NodeID
	}
	if err := s.cfg.Audit.Emit(context.WithoutCancel(ctx), ev); err != nil {
		s.log.Error("emit audit event", slog.String("event", ev.Event), slog.Any("err", err))
	}
}

// newID returns a random 128-bit hex identifier.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// copyClose copies src to dst and then closes dst's write side if it has one.
func copyClose(dst io.Writer, src io.Reader) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
