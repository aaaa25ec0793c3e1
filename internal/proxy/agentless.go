package proxy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/asciicast"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/node"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
)

// AgentlessDirectory is what the proxy needs from auth to serve agentless
// servers (auth.Server has it): the decision, the one-minute certificate
// for sshd, a host certificate to present in the server's name, and the
// node's channels for session events and recordings.
type AgentlessDirectory interface {
	AuthorizeAgentless(ctx context.Context, c auth.Caller, user auth.Caller, n auth.Node, login, remote string) (*auth.AgentlessDecision, error)
	IssueAgentlessCert(ctx context.Context, c auth.Caller, user auth.Caller, n auth.Node, login string, pub ssh.PublicKey,
		opts policy.EffectiveOptions, source string) (*ssh.Certificate, error)
	IssueProxyHostCert(pub ssh.PublicKey, principals []string, ttl time.Duration) (*ssh.Certificate, error)
	EmitEvents(ctx context.Context, c auth.Caller, events []audit.Event) error
	AppendRecording(ctx context.Context, c auth.Caller, meta recording.Meta, offset int64, data []byte) (int64, error)
	CompleteRecording(ctx context.Context, c auth.Caller, sessionID string, length int64, sha string, interrupted bool) error
}

const (
	// agentlessDialTimeout bounds the TCP connection and SSH handshake
	// with an agentless server's sshd.
	agentlessDialTimeout = 10 * time.Second
	// agentlessHostCertTTL is how long the host certificate the proxy
	// presents in an agentless server's name lives (renewed when half
	// gone).
	agentlessHostCertTTL = time.Hour
	// recordFlushEvery is how often a proxy recording is sent to auth.
	recordFlushEvery = 100 * time.Millisecond
	// maxRecordBacklog bounds recording bytes not yet accepted by auth.
	maxRecordBacklog = 16 << 20
)

// agentlessState is the proxy's state for agentless servers.
type agentlessState struct {
	mu    sync.Mutex
	key   ssh.Signer
	certs map[string]*agentlessHostCert // by node id
	live  map[*agentlessConn]struct{}
	// redecide asks runAgentlessRedecide for a pass (RedecideAgentless).
	redecide chan struct{}
}

type agentlessHostCert struct {
	signer  ssh.Signer
	expires time.Time
}

func (s *Server) agentlessDir() (AgentlessDirectory, error) {
	d, ok := s.cfg.Directory.(AgentlessDirectory)
	if !ok {
		return nil, errors.New("this proxy cannot reach agentless servers (no auth service in its process)")
	}
	return d, nil
}

// dialTarget connects a user's connection to a node: through its tunnel, or
// for an agentless server to the proxy's own SSH server for it, which
// connects to sshd on the user's behalf.
func (s *Server) dialTarget(ctx context.Context, n *auth.Node, t *nodeTunnel, u *userConn, clientAddr string) (net.Conn, error) {
	if !n.Agentless {
		if t.peer != nil {
			return s.dialPeers(ctx, t.peer.proxy, n, u, clientAddr)
		}
		return s.dialNode(ctx, t, clientAddr, u.caller.User)
	}
	dir, err := s.agentlessDir()
	if err != nil {
		return nil, err
	}
	signer, err := s.agentlessHostSigner(dir, *n)
	if err != nil {
		return nil, fmt.Errorf("host certificate: %v", err)
	}
	userEnd, serverEnd, err := connPair()
	if err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer serverEnd.Close()
		s.serveAgentless(dir, serverEnd, signer, *n, u, clientAddr)
	}()
	return userEnd, nil
}

// connPair is two connected sockets (the kernel moves the bytes; the
// relay can splice them).
func connPair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	conn := func(fd int) (net.Conn, error) {
		f := os.NewFile(uintptr(fd), "agentless")
		defer f.Close()
		return net.FileConn(f)
	}
	a, err := conn(fds[0])
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	b, err := conn(fds[1])
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// agentlessHostSigner is the host key and certificate the proxy presents
// in an agentless server's name (its name and id as principals, from the
// cluster's host CA): users' ssh verifies it as it verifies a node.
func (s *Server) agentlessHostSigner(dir AgentlessDirectory, n auth.Node) (ssh.Signer, error) {
	s.agentless.mu.Lock()
	defer s.agentless.mu.Unlock()
	if s.agentless.key == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		if s.agentless.key, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, err
		}
		s.agentless.certs = map[string]*agentlessHostCert{}
	}
	if c := s.agentless.certs[n.ID]; c != nil && time.Until(c.expires) > agentlessHostCertTTL/2 {
		return c.signer, nil
	}
	cert, err := dir.IssueProxyHostCert(s.agentless.key.PublicKey(), []string{n.Name, n.ID}, agentlessHostCertTTL)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewCertSigner(cert, s.agentless.key)
	if err != nil {
		return nil, err
	}
	s.agentless.certs[n.ID] = &agentlessHostCert{signer: signer, expires: time.Unix(int64(cert.ValidBefore), 0)}
	return signer, nil
}

type decisionKey struct{}
type upstreamKey struct{}
type certUserKey struct{}

// agentlessConn is one user's SSH connection to an agentless server,
// served by the proxy.
type agentlessConn struct {
	s    *Server
	dir  AgentlessDirectory
	node auth.Node
	user auth.Caller // current, as decided
	// cert is the identity of the user's certificate, decided again when
	// roles change (redecideAgentless).
	cert auth.Caller
	// mfaVerified: the connection's certificate is a per-session MFA one.
	mfaVerified bool
	login       string
	remote      string
	opts        policy.EffectiveOptions
	sub         lock.Subject
	up          *ssh.Client
	sconn       *ssh.ServerConn
	mu          sync.Mutex
	sessions    map[*agentlessSession]struct{}
	ended       bool
}

// nodeCaller is the node's identity for its session events and
// recordings: the proxy speaks for the agentless server it fronts.
func (c *agentlessConn) nodeCaller() auth.Caller {
	return auth.Caller{Kind: auth.KindNode, NodeID: c.node.ID}
}

// serveAgentless is the SSH server a user reaches an agentless server
// through: it authenticates the user's certificate (the same user as the
// proxy connection), decides (auth.AuthorizeAgentless: the decision nodes
// make), connects to sshd with a fresh certificate for that login only,
// and relays sessions, recording them and auditing them as a node does.
func (s *Server) serveAgentless(dir AgentlessDirectory, conn net.Conn, hostSigner ssh.Signer, n auth.Node, u *userConn, clientAddr string) {
	cfg := &ssh.ServerConfig{ServerVersion: "SSH-2.0-Warden", MaxAuthTries: 6}
	cfg.PublicKeyCallback = func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		perms, err := s.authenticateKey(meta, key)
		if err != nil {
			return nil, err
		}
		id := perms.ExtraData[identityKey{}].(*ca.CertIdentity)
		if id.Username != u.caller.User {
			return nil, fmt.Errorf("certificate of %q on a connection of %q", id.Username, u.caller.User)
		}
		return perms, nil
	}
	// After the signature: decide, then connect to sshd, so that a refusal
	// (Warden's or sshd's) reaches the user as the reason for the failed
	// login.
	cfg.VerifiedPublicKeyCallback = func(meta ssh.ConnMetadata, _ ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
		id := perms.ExtraData[identityKey{}].(*ca.CertIdentity)
		user := auth.Caller{Kind: auth.KindUser, User: id.Username, Roles: id.Roles, Traits: id.Traits, RequestIDs: id.RequestIDs,
			Issued: id.Issued, Expires: id.Expires, MFADevice: id.MFADevice}
		ctx, cancel := context.WithTimeout(context.Background(), agentlessDialTimeout)
		defer cancel()
		d, err := dir.AuthorizeAgentless(ctx, auth.ProxyCaller(), user, n, meta.User(), clientAddr)
		if err != nil {
			s.emitRefusal(dir, n, user.User, meta.User(), clientAddr, err)
			reason := lockMessage(err)
			var de *policy.DeniedError
			if errors.As(err, &de) {
				reason = "access denied: " + de.Reason
			}
			return nil, &ssh.BannerError{Err: err, Message: "warden: " + reason + "\n"}
		}
		up, err := s.dialSSHD(ctx, dir, n, d, meta.User())
		if err != nil {
			s.emitRefusal(dir, n, user.User, meta.User(), clientAddr, err)
			return nil, &ssh.BannerError{Err: err, Message: fmt.Sprintf("warden: %s: %v\n", n.Name, err)}
		}
		perms.ExtraData[decisionKey{}] = d
		perms.ExtraData[upstreamKey{}] = up
		perms.ExtraData[certUserKey{}] = user
		return perms, nil
	}
	if err := ca.ServerConfig(cfg, hostSigner); err != nil {
		s.log.Error("agentless server config", "err", err)
		return
	}
	_ = conn.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		s.log.Debug("agentless handshake failed", "node", n.Name, "err", err)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	defer sconn.Close()
	d := sconn.Permissions.ExtraData[decisionKey{}].(*auth.AgentlessDecision)
	up := sconn.Permissions.ExtraData[upstreamKey{}].(*ssh.Client)
	defer up.Close()
	cert := sconn.Permissions.ExtraData[certUserKey{}].(auth.Caller)
	c := &agentlessConn{s: s, dir: dir, node: n, user: d.Caller, cert: cert, mfaVerified: u.sessionMFA != nil, login: sconn.User(), remote: clientAddr, opts: d.Options,
		up: up, sconn: sconn, sessions: map[*agentlessSession]struct{}{}}
	c.sub = d.Caller.LockSubject()
	c.sub.Login, c.sub.Node, c.sub.NodeID = c.login, n.Name, n.ID
	defer s.trackAgentless(c)()
	go ssh.DiscardRequests(reqs) // no remote forwarding to agentless servers
	go func() {
		// sshd opens no channels we accept (agent or X11 forwarding).
		for nc := range up.HandleChannelOpen("forwarded-tcpip") {
			_ = nc.Reject(ssh.Prohibited, "not supported")
		}
	}()
	go func() {
		_ = up.Wait()
		sconn.Close()
	}()
	var wg sync.WaitGroup
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.serveSession(nc)
			}()
		case "direct-tcpip":
			if !c.opts.PortForwarding {
				_ = nc.Reject(ssh.Prohibited, "port forwarding is not allowed by your roles")
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.forwardPort(nc)
			}()
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
	// The user's connection ended (or was cut): end sshd's, and with it
	// the commands sshd would leave running for closed channels.
	up.Close()
	wg.Wait()
}

// emitRefusal audits a refused login as a node audits one.
func (s *Server) emitRefusal(dir AgentlessDirectory, n auth.Node, user, login, remote string, err error) {
	detail := err.Error()
	var de *policy.DeniedError
	if errors.As(err, &de) && de.Detail != "" {
		detail = de.Reason + " (" + de.Detail + ")"
	}
	ev := audit.Event{Event: audit.AuthAttempt, User: user, Login: login, RemoteAddr: remote, Success: false, Error: detail,
		Fields: map[string]any{"agentless": true}}
	if e := dir.EmitEvents(context.Background(), auth.Caller{Kind: auth.KindNode, NodeID: n.ID}, []audit.Event{ev}); e != nil {
		s.log.Error("audit emit failed", "event", audit.AuthAttempt, "err", e)
	}
}

// dialSSHD connects to an agentless server's sshd as login, with a fresh
// certificate valid a minute, for that login only and from the proxy's
// address only; sshd's host certificate must come from the cluster's host
// CA and name the server.
func (s *Server) dialSSHD(ctx context.Context, dir AgentlessDirectory, n auth.Node, d *auth.AgentlessDecision, login string) (*ssh.Client, error) {
	var dialer net.Dialer
	tcp, err := dialer.DialContext(ctx, "tcp", n.Addr)
	if err != nil {
		return nil, fmt.Errorf("cannot reach sshd at %s", n.Addr)
	}
	source := ""
	if la, ok := tcp.LocalAddr().(*net.TCPAddr); ok {
		source = la.IP.String()
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tcp.Close()
		return nil, err
	}
	key, _ := ssh.NewSignerFromKey(priv)
	cert, err := dir.IssueAgentlessCert(ctx, auth.ProxyCaller(), d.Caller, n, login, key.PublicKey(), d.Options, source)
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("session certificate: %v", err)
	}
	certSigner, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		tcp.Close()
		return nil, err
	}
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool { return containsKey(s.cfg.HostCAs(), auth) },
		Clock:           s.cfg.Now,
	}
	_, port, _ := net.SplitHostPort(n.Addr)
	cfg := &ssh.ClientConfig{
		User: login,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(certSigner)},
		// Only host certificates: no trust on first use.
		HostKeyAlgorithms: ca.HostCertAlgorithms,
		HostKeyCallback: func(_ string, remote net.Addr, key ssh.PublicKey) error {
			// The certificate must name the server as Warden knows it.
			if err := checker.CheckHostKey(net.JoinHostPort(n.Name, port), remote, key); err != nil {
				return fmt.Errorf("sshd's host certificate is not valid for %s (warden sign --host %s): %v", n.Name, n.Name, err)
			}
			return nil
		},
		ClientVersion: "SSH-2.0-Warden-Proxy",
	}
	ca.ClientConfig(cfg)
	if dl, ok := ctx.Deadline(); ok {
		_ = tcp.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(tcp, n.Addr, cfg)
	if err != nil {
		tcp.Close()
		if strings.Contains(err.Error(), "no common algorithm for host key") {
			return nil, fmt.Errorf("sshd presents no host certificate (warden sign --host %s): not connected", n.Name)
		}
		return nil, fmt.Errorf("connection to sshd failed: %v", err)
	}
	_ = tcp.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

// trackAgentless registers c for lock checks until the returned function.
func (s *Server) trackAgentless(c *agentlessConn) func() {
	s.agentless.mu.Lock()
	if s.agentless.live == nil {
		s.agentless.live = map[*agentlessConn]struct{}{}
	}
	s.agentless.live[c] = struct{}{}
	s.agentless.mu.Unlock()
	if err := s.cfg.Directory.CheckLock(c.sub); err != nil {
		c.end("locked", lockMessage(err))
	}
	return func() {
		s.agentless.mu.Lock()
		delete(s.agentless.live, c)
		s.agentless.mu.Unlock()
	}
}

// reverifyAgentless ends, at once and with the lock's message, the
// agentless connections a lock now matches (nodes do this for their own
// sessions; here the proxy is the node).
func (s *Server) reverifyAgentless() {
	s.agentless.mu.Lock()
	conns := make([]*agentlessConn, 0, len(s.agentless.live))
	for c := range s.agentless.live {
		conns = append(conns, c)
	}
	s.agentless.mu.Unlock()
	for _, c := range conns {
		sub := c.sub
		sub.Sessions = c.sessionIDs()
		if err := s.cfg.Directory.CheckLock(sub); err != nil {
			c.end("locked", lockMessage(err))
		}
	}
}

// agentlessRedecideInterval is how often live agentless connections are
// decided again when nothing announced a change (a user's record edited on
// another auth server, a node's labels, an expiring request): role edits
// and locks act at once.
const agentlessRedecideInterval = 10 * time.Second

// RedecideAgentless decides every live agentless connection again, as if
// it were made now, and ends those the current roles, user, requests,
// node or locks no longer allow, or allow with less (no terminal, port
// forwarding or file transfer where they had it). It does not block: auth
// calls it whenever roles change. Runs are coalesced: one more follows a
// run in progress.
func (s *Server) RedecideAgentless() {
	select {
	case s.agentless.redecide <- struct{}{}:
	default: // one is already due
	}
}

// runAgentlessRedecide serves RedecideAgentless and the periodic pass.
func (s *Server) runAgentlessRedecide() {
	t := time.NewTicker(agentlessRedecideInterval)
	defer t.Stop()
	for {
		select {
		case <-s.agentless.redecide:
		case <-t.C:
		case <-s.shutdown:
			return
		}
		s.redecideAgentless()
	}
}

func (s *Server) redecideAgentless() {
	s.agentless.mu.Lock()
	conns := make([]*agentlessConn, 0, len(s.agentless.live))
	for c := range s.agentless.live {
		conns = append(conns, c)
	}
	s.agentless.mu.Unlock()
	for _, c := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), agentlessDialTimeout)
		n := c.node
		cert := c.cert
		expired := !cert.Expires.IsZero() && !time.Now().Before(cert.Expires)
		if expired {
			// The connection outlived its certificate, which its roles
			// allowed (the proxy ends it otherwise): decide the rest.
			cert.Expires = time.Time{}
		}
		d, err := c.dir.AuthorizeAgentless(ctx, auth.ProxyCaller(), cert, n, c.login, c.remote)
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil && expired && !d.Caller.KeepPastExpiry {
			err = errors.New("your certificate has expired; log in again")
		}
		switch {
		case err != nil && timedOut:
			// auth did not answer in time: the next pass decides.
			s.log.Warn("agentless re-decision timed out", "node", n.Name, "user", c.cert.User, "err", err)
		case err != nil:
			reason := lockMessage(err)
			var de *policy.DeniedError
			if errors.As(err, &de) {
				reason = "access denied: " + de.Reason
			}
			c.end("access changed", reason)
		default:
			if why := narrowed(c.opts, d.Options); why != "" {
				c.end("access changed", "your roles no longer allow "+why)
			}
		}
	}
}

// narrowed names what the new options take away that a live connection
// was decided with ("" if nothing).
func narrowed(was, now policy.EffectiveOptions) string {
	switch {
	case was.PermitPTY && !now.PermitPTY:
		return "a terminal"
	case was.PortForwarding && !now.PortForwarding:
		return "port forwarding"
	case was.FileTransfer && !now.FileTransfer:
		return "file transfer"
	case recordRank(now.RecordSession) > recordRank(was.RecordSession):
		return "this session without " + now.RecordSession + " recording"
	}
	return ""
}

// recordRank orders record_session modes by strictness.
func recordRank(mode string) int {
	switch mode {
	case "off":
		return 0
	case "", "best_effort":
		return 1
	default:
		return 2
	}
}

func (c *agentlessConn) sessionIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.sessions))
	for s := range c.sessions {
		ids = append(ids, s.id)
	}
	return ids
}

// end tells every session why (msg) and closes the connection; reason is
// the sessions' end reason in the audit.
func (c *agentlessConn) end(reason, msg string) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	sessions := make([]*agentlessSession, 0, len(c.sessions))
	for s := range c.sessions {
		sessions = append(sessions, s)
		s.setReason(reason)
	}
	c.mu.Unlock()
	for _, s := range sessions {
		_, _ = s.userCh.Stderr().Write([]byte("\r\nwarden: " + msg + "\r\n"))
	}
	c.sconn.Close()
	c.up.Close()
}

// forwardPort relays a local port forward (ssh -L) through sshd.
func (c *agentlessConn) forwardPort(nc ssh.NewChannel) {
	var req directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	upCh, upReqs, err := c.up.OpenChannel("direct-tcpip", nc.ExtraData())
	ev := audit.Event{Event: audit.PortForward, User: c.user.User, Login: c.login, RemoteAddr: c.remote, Success: err == nil,
		Fields: map[string]any{"addr": net.JoinHostPort(req.Host, fmt.Sprint(req.Port)), "agentless": true}}
	if err != nil {
		ev.Error = err.Error()
	}
	c.emit(ev)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	go ssh.DiscardRequests(upReqs)
	userCh, userReqs, err := nc.Accept()
	if err != nil {
		upCh.Close()
		return
	}
	go ssh.DiscardRequests(userReqs)
	pipeChannels(userCh, upCh)
}

// pipeChannels copies both ways, half-closing, until both directions end.
func pipeChannels(a, b ssh.Channel) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(b, a); _ = b.CloseWrite() }()
	go func() { defer wg.Done(); _, _ = io.Copy(a, b); _ = a.CloseWrite() }()
	wg.Wait()
	a.Close()
	b.Close()
}

func (c *agentlessConn) emit(evs ...audit.Event) {
	for i := range evs {
		if evs[i].Fields == nil {
			evs[i].Fields = map[string]any{}
		}
		evs[i].Fields["agentless"] = true
		evs[i].Fields["recorded_by"] = "proxy"
	}
	if err := c.dir.EmitEvents(context.Background(), c.nodeCaller(), evs); err != nil {
		c.s.log.Error("audit emit failed", "node", c.node.Name, "err", err)
	}
}

func newSessionID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// agentlessSession is one session channel relayed to sshd.
type agentlessSession struct {
	c      *agentlessConn
	id     string
	userCh ssh.Channel
	upCh   ssh.Channel
	mu     sync.Mutex
	// started is set by the first shell, exec or subsystem request.
	started      bool
	kind, cmd    string
	term         string
	cols, rows   int
	tty          bool
	rec          *proxyRecording
	exitCode     int
	reason       string
	recordFailed chan struct{}
}

func (s *agentlessSession) setReason(r string) {
	s.mu.Lock()
	s.reason = r
	s.mu.Unlock()
}

func (c *agentlessConn) serveSession(nc ssh.NewChannel) {
	upCh, upReqs, err := c.up.OpenChannel("session", nc.ExtraData())
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "sshd: "+err.Error())
		return
	}
	userCh, userReqs, err := nc.Accept()
	if err != nil {
		upCh.Close()
		return
	}
	s := &agentlessSession{c: c, id: newSessionID(), userCh: userCh, upCh: upCh, exitCode: -1, recordFailed: make(chan struct{})}
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		userCh.Close()
		upCh.Close()
		return
	}
	c.sessions[s] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.sessions, s)
		c.mu.Unlock()
	}()
	// sshd's requests (exit-status, exit-signal, eow) go to the user.
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		for req := range upReqs {
			if req.Type == "exit-status" && len(req.Payload) == 4 {
				s.mu.Lock()
				s.exitCode = int(uint32(req.Payload[0])<<24 | uint32(req.Payload[1])<<16 | uint32(req.Payload[2])<<8 | uint32(req.Payload[3]))
				s.mu.Unlock()
			}
			ok, _ := userCh.SendRequest(req.Type, req.WantReply, req.Payload)
			if req.WantReply {
				_ = req.Reply(ok, nil)
			}
		}
	}()
	var copies sync.WaitGroup
	copies.Add(2)
	go func() {
		defer copies.Done()
		s.copyOutput(userCh, upCh)
	}()
	go func() {
		defer copies.Done()
		_, _ = io.Copy(userCh.Stderr(), upCh.Stderr())
	}()
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		s.copyInput(upCh, userCh)
		_ = upCh.CloseWrite()
	}()
	// sshd's side done (the command exited, its status passed on): close
	// the user's channel, which ends its requests below.
	go func() {
		copies.Wait()
		<-upDone
		userCh.Close()
	}()
	for req := range userReqs {
		if !s.handleRequest(req) {
			go ssh.DiscardRequests(userReqs)
			break
		}
	}
	// The user's channel is done (closed), or a request refused the
	// session: end sshd's side too.
	upCh.Close()
	copies.Wait()
	<-upDone
	userCh.Close()
	<-inputDone
	s.finish()
}

// copyOutput copies sshd's output to the user, into the recording.
func (s *agentlessSession) copyOutput(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if r := s.recording(); r != nil {
				r.output(buf[:n])
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			return
		}
	}
}

func (s *agentlessSession) copyInput(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if r := s.recording(); r != nil && s.c.opts.RecordInput {
				r.input(buf[:n])
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *agentlessSession) recording() *proxyRecording {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec
}

// refuse tells the user why a session cannot start and ends it.
func (s *agentlessSession) refuse(req *ssh.Request, msg string) bool {
	_ = req.Reply(true, nil)
	_, _ = s.userCh.Stderr().Write([]byte("warden: " + msg + "\r\n"))
	_, _ = s.userCh.SendRequest("exit-status", false, []byte{0, 0, 0, 1})
	return false
}

// handleRequest applies the decision's options to one request of the
// user and passes it to sshd. False ends the session.
func (s *agentlessSession) handleRequest(req *ssh.Request) bool {
	c := s.c
	switch req.Type {
	case "pty-req":
		if !c.opts.PermitPTY {
			_ = req.Reply(false, nil)
			return true
		}
		var p struct {
			Term          string
			Cols, Rows    uint32
			Width, Height uint32
			Modes         string
		}
		if ssh.Unmarshal(req.Payload, &p) == nil {
			s.mu.Lock()
			s.tty, s.term, s.cols, s.rows = true, p.Term, int(min(p.Cols, 10000)), int(min(p.Rows, 10000))
			s.mu.Unlock()
		}
	case "window-change":
		var p struct{ Cols, Rows, Width, Height uint32 }
		if ssh.Unmarshal(req.Payload, &p) == nil {
			s.mu.Lock()
			s.cols, s.rows = int(min(p.Cols, 10000)), int(min(p.Rows, 10000))
			r := s.rec
			s.mu.Unlock()
			if r != nil {
				r.resize(int(min(p.Cols, 10000)), int(min(p.Rows, 10000)))
			}
		}
	case "auth-agent-req@openssh.com", "x11-req":
		_ = req.Reply(false, nil)
		return true
	case "shell", "exec", "subsystem":
		s.mu.Lock()
		started := s.started
		s.started = true
		s.mu.Unlock()
		if started {
			_ = req.Reply(false, nil)
			return true
		}
		kind, cmd := req.Type, ""
		if req.Type != "shell" {
			var p struct{ Value string }
			if ssh.Unmarshal(req.Payload, &p) != nil || len(p.Value) > 256<<10 {
				_ = req.Reply(false, nil)
				return false
			}
			cmd = p.Value
		}
		if !c.opts.FileTransfer {
			why, transfer := "", false
			switch kind {
			case "subsystem":
				transfer, why = cmd == "sftp", "is the sftp subsystem"
			case "exec":
				why, transfer = node.FileTransferCommand(cmd)
			}
			if transfer {
				ev := audit.Event{Event: audit.Exec, User: c.user.User, Login: c.login, Node: c.node.Name, SessionID: s.id, RemoteAddr: c.remote,
					Error: "file transfer not allowed: the command " + why, Fields: map[string]any{"command": cmd, "refused": "file_transfer"}}
				c.emit(ev)
				return s.refuse(req, "file transfer (scp, sftp, rsync) is not allowed by your roles")
			}
		}
		if !s.start(kind, cmd) {
			return s.refuse(req, "session recording is required by your roles but is unavailable")
		}
	}
	ok, err := s.upCh.SendRequest(req.Type, req.WantReply, req.Payload)
	if req.WantReply {
		_ = req.Reply(ok && err == nil, nil)
	}
	return err == nil
}

// start audits the session's start and, for a terminal session, starts its
// recording at the proxy. False: record_session strict and no recording.
func (s *agentlessSession) start(kind, cmd string) bool {
	c := s.c
	s.mu.Lock()
	s.kind, s.cmd = kind, cmd
	tty, cols, rows, term := s.tty, s.cols, s.rows, s.term
	s.mu.Unlock()
	mode := c.opts.RecordSession
	switch mode {
	case "", "best_effort":
		mode = "best_effort"
	case "off":
	default:
		mode = "strict" // unknown: fail closed
	}
	record := tty && mode != "off"
	start := audit.Event{Event: audit.SessionStart, User: c.user.User, Login: c.login, Node: c.node.Name, SessionID: s.id,
		RemoteAddr: c.remote, Success: true, Fields: map[string]any{"kind": kind, "tty": tty, "recorded": record}}
	if cmd != "" {
		start.Fields["command"] = cmd
	}
	if c.user.MFADevice != "" {
		start.Fields["mfa_device"] = c.user.MFADevice
	}
	if c.mfaVerified {
		start.Fields["mfa_verified"] = true
	}
	c.emit(start)
	if !record {
		return true
	}
	now := time.Now()
	meta := recording.Meta{SessionID: s.id, User: c.user.User, Login: c.login, Node: c.node.Name, NodeID: c.node.ID,
		RemoteAddr: c.remote, Start: now}
	h := asciicast.Header{Width: max(cols, 1), Height: max(rows, 1), Timestamp: now.Unix(),
		Title: c.user.User + " as " + c.login + " on " + c.node.Name}
	if term != "" {
		h.Env = map[string]string{"TERM": term}
	}
	r, err := startProxyRecording(recordTarget{dir: c.dir, caller: c.nodeCaller(), log: c.s.log}, meta, h, mode == "strict", func() {
		// Strict: a recording that fails ends the session.
		c.s.log.Error("recording failed: ending the session (record_session strict)", "session", s.id)
		s.setReason("recording failed")
		_, _ = s.userCh.Stderr().Write([]byte("\r\nwarden: session recording failed; the session is ended because your roles require recording\r\n"))
		s.upCh.Close()
		s.userCh.Close()
	})
	if err != nil {
		c.s.log.Warn("recording could not start", "session", s.id, "mode", mode, "err", err)
		if mode == "strict" {
			s.setReason("recording unavailable")
			return false
		}
		return true
	}
	s.mu.Lock()
	s.rec = r
	s.mu.Unlock()
	return true
}

// finish completes the recording and audits the end.
func (s *agentlessSession) finish() {
	c := s.c
	s.mu.Lock()
	started, kind, cmd, code, reason, r, tty := s.started, s.kind, s.cmd, s.exitCode, s.reason, s.rec, s.tty
	s.mu.Unlock()
	if r != nil {
		r.close(reason != "")
	}
	if !started || kind == "" {
		return
	}
	var evs []audit.Event
	if kind == "exec" {
		evs = append(evs, audit.Event{Event: audit.Exec, User: c.user.User, Login: c.login, Node: c.node.Name, SessionID: s.id,
			RemoteAddr: c.remote, Success: code == 0, Fields: map[string]any{"command": cmd, "exit_code": code, "tty": tty}})
	}
	end := audit.Event{Event: audit.SessionEnd, User: c.user.User, Login: c.login, Node: c.node.Name, SessionID: s.id,
		RemoteAddr: c.remote, Success: true, Fields: map[string]any{"kind": kind, "exit_code": code, "tty": tty}}
	if reason != "" {
		end.Fields["reason"] = reason
	}
	evs = append(evs, end)
	c.emit(evs...)
}

// recordTarget is where a proxy recording goes: auth's recording store,
// as the recording of the node (agentless server, or kube agent) the
// proxy speaks for.
type recordTarget struct {
	dir interface {
		AppendRecording(ctx context.Context, c auth.Caller, meta recording.Meta, offset int64, data []byte) (int64, error)
		CompleteRecording(ctx context.Context, c auth.Caller, sessionID string, length int64, sha string, interrupted bool) error
	}
	caller auth.Caller
	log    *slog.Logger
}

// proxyRecording writes a session's asciicast at the proxy and streams it
// to auth's recording store as the agentless server's (or kube agent's)
// recording.
type proxyRecording struct {
	c      recordTarget
	meta   recording.Meta
	start  time.Time
	mu     sync.Mutex
	buf    bytes.Buffer
	w      *asciicast.Writer
	hw     *asciicast.HashingWriter
	offset int64
	failed bool
	strict bool
	onFail func()
	stop   chan struct{}
	done   chan struct{}
}

func startProxyRecording(c recordTarget, meta recording.Meta, h asciicast.Header, strict bool, onFail func()) (*proxyRecording, error) {
	r := &proxyRecording{c: c, meta: meta, start: meta.Start, strict: strict, onFail: onFail, stop: make(chan struct{}), done: make(chan struct{})}
	r.hw = asciicast.NewHashingWriter(&r.buf)
	w, err := asciicast.NewWriter(r.hw, h, meta.Start)
	if err != nil {
		return nil, err
	}
	r.w = w
	// The header reaches auth before the session goes on: strict mode
	// refuses a session auth cannot record.
	if err := r.flush(); err != nil {
		return nil, err
	}
	go r.loop()
	return r, nil
}

func (r *proxyRecording) loop() {
	defer close(r.done)
	t := time.NewTicker(recordFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			if err := r.flush(); err != nil {
				r.fail(err)
			}
		}
	}
}

func (r *proxyRecording) fail(err error) {
	r.mu.Lock()
	already := r.failed
	r.failed = true
	r.buf.Reset()
	r.mu.Unlock()
	if already {
		return
	}
	r.c.log.Error("proxy recording failed", "session", r.meta.SessionID, "err", err)
	if r.strict && r.onFail != nil {
		r.onFail()
	}
}

// flush sends what was written since the last flush.
func (r *proxyRecording) flush() error {
	r.mu.Lock()
	if r.failed || r.buf.Len() == 0 {
		r.mu.Unlock()
		return nil
	}
	data := bytes.Clone(r.buf.Bytes())
	r.buf.Reset()
	off := r.offset
	r.mu.Unlock()
	for len(data) > 0 {
		n := min(len(data), recording.MaxChunk)
		if _, err := r.c.dir.AppendRecording(context.Background(), r.c.caller, r.meta, off, data[:n]); err != nil {
			return err
		}
		off += int64(n)
		data = data[n:]
	}
	r.mu.Lock()
	r.offset = off
	r.mu.Unlock()
	return nil
}

func (r *proxyRecording) write(f func(t time.Time) error) {
	r.mu.Lock()
	if r.failed {
		r.mu.Unlock()
		return
	}
	err := f(time.Now())
	over := r.buf.Len() > maxRecordBacklog
	r.mu.Unlock()
	if err == nil && over {
		err = errors.New("auth is not keeping up with the recording")
	}
	if err != nil {
		r.fail(err)
	}
}

func (r *proxyRecording) output(p []byte) {
	r.write(func(t time.Time) error { return r.w.Output(t, p) })
}

func (r *proxyRecording) input(p []byte) {
	r.write(func(t time.Time) error { return r.w.Input(t, p) })
}

func (r *proxyRecording) resize(cols, rows int) {
	r.write(func(t time.Time) error { return r.w.Resize(t, cols, rows) })
}

// close ends the recording and completes it in auth's store.
func (r *proxyRecording) close(interrupted bool) {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	failed := r.failed
	if !failed {
		_ = r.w.Close()
	}
	r.mu.Unlock()
	if failed {
		return
	}
	if err := r.flush(); err != nil {
		r.fail(err)
		return
	}
	r.mu.Lock()
	length, sum := r.hw.Len(), r.hw.SumHex()
	r.mu.Unlock()
	if err := r.c.dir.CompleteRecording(context.Background(), r.c.caller, r.meta.SessionID, length, sum, interrupted); err != nil {
		r.c.log.Error("complete proxy recording", "session", r.meta.SessionID, "err", err)
	}
}
