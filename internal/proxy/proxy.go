// Package proxy is Warden's single entry point: one port that speaks TLS
// (the HTTPS API, served elsewhere) and SSH. Over SSH it is both the jump
// host for users (direct-tcpip to a node, end-to-end encrypted between the
// user and the node) and the reverse-tunnel server that node agents dial
// out to, so nodes need no inbound port.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/tunnel"
)

// Directory is what the proxy needs from auth.
type Directory interface {
	// GetNodeRegistration returns the registration of a joined node.
	GetNodeRegistration(ctx context.Context, id string) (*auth.NodeRegistration, error)
	// ListNodes lists the live nodes a caller may access.
	ListNodes(ctx context.Context, c auth.Caller, filter map[string]string) ([]auth.Node, error)
	// CheckLock refuses subjects under a lock.
	CheckLock(sub lock.Subject) error
	// CurrentCaller checks a user's certificate against the current state
	// (user, access requests, locks) and returns the caller with the
	// current roles.
	CurrentCaller(ctx context.Context, c auth.Caller, via, remote string) (auth.Caller, error)
	// AuthorizeKube decides a Kubernetes API request of a current caller.
	AuthorizeKube(ctx context.Context, c auth.Caller, cluster auth.KubeCluster, res policy.KubeResource) (policy.KubeDecision, error)
	// SessionMFANeeded reports whether a session to the node needs a
	// per-session MFA certificate (policy.SessionMFARequired).
	SessionMFANeeded(roles []string, traits map[string][]string, n auth.Node) bool
	// SpendSessionCert counts one use of a per-session certificate,
	// refusing it beyond max.
	SpendSessionCert(ctx context.Context, serial uint64, expires time.Time, max int) error
}

// Config configures the proxy.
type Config struct {
	// HostSigner is the proxy's host certificate signer.
	HostSigner ssh.Signer
	UserCAs    func() []ssh.PublicKey
	HostCAs    func() []ssh.PublicKey
	Directory  Directory
	Audit      audit.Emitter
	Metrics    *Metrics
	Logger     *slog.Logger
	Now        func() time.Time
	// HandshakeTimeout bounds the SSH handshake (default 10s).
	HandshakeTimeout time.Duration
	// MaxUnauthenticated bounds concurrent connections still in the
	// handshake (default 512); more are dropped at once.
	MaxUnauthenticated int
	// MaxChannelsPerConn bounds concurrent forwarded connections per user
	// connection (default 64).
	MaxChannelsPerConn int
	// LockGrace is how long a node has to end a newly locked session (with
	// the lock message) before the proxy cuts it (default
	// DefaultLockGrace; negative: at once).
	LockGrace time.Duration
	// Peering, when set, makes this proxy one of several on shared state
	// (peers.go): it publishes the tunnels it holds and reaches nodes
	// whose tunnels end at another proxy through that proxy.
	Peering *PeerConfig
}

// Server is the proxy's SSH side.
type Server struct {
	cfg      Config
	log      *slog.Logger
	reg      *Registry
	sshCfg   *ssh.ServerConfig
	unauth   chan struct{}
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
	shutdown chan struct{}
	data     dataState
	relays   relaySet
	// agentless is the state of agentless servers (agentless.go).
	agentless agentlessState
	kube      kubeState
	// peers is proxy peering (peers.go); nil when off.
	peers *peering
}

type identityKey struct{}
type certKey struct{}

const (
	extKind     = "warden-kind"
	extNodeID   = "warden-node-id"
	kindUser    = "user"
	kindNode    = "node"
	maxJSONBody = 64 << 10
)

// New validates cfg and returns a proxy.
func New(cfg Config) (*Server, error) {
	if cfg.HostSigner == nil || cfg.UserCAs == nil || cfg.HostCAs == nil || cfg.Directory == nil {
		return nil, errors.New("proxy: HostSigner, UserCAs, HostCAs and Directory are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxUnauthenticated <= 0 {
		cfg.MaxUnauthenticated = 512
	}
	if cfg.LockGrace == 0 {
		cfg.LockGrace = DefaultLockGrace
	}
	if cfg.MaxChannelsPerConn <= 0 {
		cfg.MaxChannelsPerConn = 64
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "proxy"), reg: newRegistry(cfg.Metrics),
		unauth: make(chan struct{}, cfg.MaxUnauthenticated), conns: map[net.Conn]struct{}{}, shutdown: make(chan struct{}),
		data:   dataState{pending: map[string]chan net.Conn{}, users: map[string]*userTicket{}},
		relays: relaySet{m: map[*liveRelay]struct{}{}},
		kube: kubeState{agents: map[string]*kubeAgent{}, byCluster: map[string]*kubeAgent{}, live: map[*kubeLive]struct{}{},
			events: make(chan audit.Event, kubeAuditQueue)}}
	if cfg.Audit != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.runKubeAudit() }()
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.runKubeRedecide() }()
	s.agentless.redecide = make(chan struct{}, 1)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.runAgentlessRedecide() }()
	s.sshCfg = &ssh.ServerConfig{
		PublicKeyCallback: s.authenticate,
		MaxAuthTries:      6,
		ServerVersion:     "SSH-2.0-Warden",
	}
	if err := ca.ServerConfig(s.sshCfg, cfg.HostSigner); err != nil {
		return nil, err
	}
	if cfg.Peering != nil {
		if err := s.startPeering(*cfg.Peering); err != nil {
			close(s.shutdown)
			s.wg.Wait()
			return nil, err
		}
	}
	return s, nil
}

// Registry returns the live node registry (the cluster inventory).
func (s *Server) Registry() *Registry { return s.reg }

// authenticate accepts user certificates (for jumping) and host
// certificates (for tunnels), never plain keys, and records which it was.
// It has no side effects but a metric: it also runs for key probes.
//
// A refused certificate is answered with its reason in an SSH banner, which
// OpenSSH shows (`ssh -J` would otherwise say only "Permission denied
// (publickey)"); a plain key is refused without one, as a client offers its
// keys in turn and most of them are not meant for Warden.
func (s *Server) authenticate(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	perms, err := s.authenticateKey(meta, key)
	if err != nil {
		s.cfg.Metrics.AuthFailures.Inc()
		if _, isCert := key.(*ssh.Certificate); isCert && meta.User() != tunnel.User {
			return nil, &ssh.BannerError{Err: err, Message: "warden: " + err.Error() + "\n"}
		}
	}
	return perms, err
}

func (s *Server) authenticateKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return nil, errors.New("only Warden certificates are accepted")
	}
	now := s.cfg.Now()
	checker := &ssh.CertChecker{Clock: func() time.Time { return now }}
	switch cert.CertType {
	case ssh.HostCert:
		if meta.User() != tunnel.User {
			return nil, errors.New("a host certificate cannot log in as a user")
		}
		if !containsKey(s.cfg.HostCAs(), cert.SignatureKey) {
			return nil, errors.New("host certificate not signed by the cluster host CA")
		}
		if err := checker.CheckCert(cert.KeyId, cert); err != nil {
			return nil, err
		}
		return &ssh.Permissions{Extensions: map[string]string{extKind: kindNode, extNodeID: cert.KeyId}}, nil
	case ssh.UserCert:
		if meta.User() == tunnel.User {
			return nil, errors.New("a user certificate cannot open a node tunnel")
		}
		if !containsKey(s.cfg.UserCAs(), cert.SignatureKey) {
			return nil, errors.New("the certificate is not signed by this Warden cluster (run warden login)")
		}
		// Validity first: an expired certificate says so, whatever else
		// is wrong with it.
		if err := checkValidity(cert, now); err != nil {
			return nil, err
		}
		// Every Warden user certificate carries its internal principal;
		// the OS login is checked by the node, not here.
		if err := checker.CheckCert(ca.InternalPrincipalPrefix+cert.KeyId, cert); err != nil {
			return nil, certError(err)
		}
		id, err := ca.IdentityFromSSHCert(cert)
		if err != nil {
			return nil, fmt.Errorf("the certificate is not a Warden user certificate: %v", err)
		}
		return &ssh.Permissions{Extensions: map[string]string{extKind: kindUser},
			ExtraData: map[any]any{identityKey{}: id, certKey{}: cert}}, nil
	}
	return nil, errors.New("unknown certificate type")
}

// checkValidity refuses a certificate outside its validity period.
func checkValidity(cert *ssh.Certificate, now time.Time) error {
	unix := now.Unix()
	if unix < 0 || uint64(unix) < cert.ValidAfter {
		return errors.New("your certificate is not valid yet (check the clock)")
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && uint64(unix) >= cert.ValidBefore {
		return errors.New("your certificate has expired; run warden login")
	}
	return nil
}

// certError turns a certificate check's error into a reason for the user.
func certError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "principal"):
		return errors.New("the certificate is not a Warden user certificate (run warden login)")
	}
	return fmt.Errorf("the certificate was refused: %v", err)
}

func containsKey(keys []ssh.PublicKey, k ssh.PublicKey) bool {
	m := k.Marshal()
	for _, c := range keys {
		if string(c.Marshal()) == string(m) {
			return true
		}
	}
	return false
}

// Serve handles SSH connections from ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	return s.acceptLoop(ln, func(c net.Conn) {
		defer s.untrack(c)
		s.handle(c)
	})
}

// acceptLoop accepts from ln until it closes, counting each connection as
// unauthenticated (handle releases the slot once it knows who is there) and
// tracking it so Close ends it.
func (s *Server) acceptLoop(ln net.Listener, handle func(net.Conn)) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return nil
			}
			return err
		}
		select {
		case s.unauth <- struct{}{}:
		default:
			s.log.Warn("too many unauthenticated connections; dropping", "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		if !s.track(c) {
			<-s.unauth
			c.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			handle(c)
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.forget(c)
	c.Close()
}

// forget stops tracking c without closing it.
func (s *Server) forget(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close ends all connections and waits for their handlers.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.shutdown)
	s.mu.Unlock()
	if s.peers != nil {
		// Peers stop routing here first.
		s.peers.close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.closeTickets()
	s.wg.Wait()
	return nil
}

func (s *Server) handle(raw net.Conn) {
	// Buffered once it is known to be a kube agent's tunnel (serveTunnel).
	c := tunnel.NewBufferedConn(raw)
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(c, s.sshCfg)
	<-s.unauth
	if err != nil {
		s.log.Debug("ssh handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer sconn.Close()
	switch sconn.Permissions.Extensions[extKind] {
	case kindNode:
		s.serveTunnel(sconn, chans, reqs, c)
	case kindUser:
		s.serveUser(sconn, chans, reqs)
	}
}

// listCandidates renders node names for an error message.
func listCandidates(nodes []auth.Node) string {
	if len(nodes) == 0 {
		return "you have access to no node right now"
	}
	names := make([]string, 0, min(len(nodes), 20))
	for i, n := range nodes {
		if i == 20 {
			names = append(names, fmt.Sprintf("and %d more", len(nodes)-20))
			break
		}
		names = append(names, n.Name)
	}
	return "nodes you can access: " + strings.Join(names, ", ")
}
