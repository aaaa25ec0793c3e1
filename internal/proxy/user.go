package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/target"
	"github.com/warden-sh/warden/internal/tunnel"
)

// expiryGrace is how long after certificate expiry the proxy closes a
// jump connection itself.
const expiryGrace = 5 * time.Second

// directTCPIP is the RFC 4254 7.2 payload.
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// userConn is what the proxy knows of an authenticated user connection.
type userConn struct {
	// caller is the identity in the certificate; route checks it against
	// the current state (auth.Server.CurrentCaller) on every dial.
	caller auth.Caller
	remote string
	// deadline is when the certificate expires (zero: never).
	deadline time.Time
	// sessionMFA is the mark of a per-session MFA certificate (nil for a
	// certificate from login), with the certificate's serial.
	sessionMFA *policy.SessionMFAMark
	serial     uint64
}

func (s *Server) serveUser(sconn *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	id := sconn.Permissions.ExtraData[identityKey{}].(*ca.CertIdentity)
	cert := sconn.Permissions.ExtraData[certKey{}].(*ssh.Certificate)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := &userConn{caller: auth.Caller{Kind: auth.KindUser, User: id.Username, Roles: id.Roles, Traits: id.Traits,
		RequestIDs: id.RequestIDs, Issued: id.Issued, Expires: id.Expires, MFADevice: id.MFADevice},
		remote: sconn.RemoteAddr().String(), serial: cert.Serial}
	if m := id.SessionMFA; m != nil {
		u.sessionMFA = &policy.SessionMFAMark{Nodes: m.Nodes, MaxSessions: m.MaxSessions}
	}
	// The proxy connection does not outlive the certificate. The grace
	// period lets the node end its sessions first, with a message the user
	// sees, rather than the jump connection vanishing silently. A
	// per-session MFA certificate lasts about a minute but the sessions it
	// opens do not end with it: the node bounds them (node.checkSessionMFA),
	// and the connection ends with them.
	if cert.ValidBefore != ssh.CertTimeInfinity && u.sessionMFA == nil {
		u.deadline = time.Unix(int64(cert.ValidBefore), 0)
		timer := time.AfterFunc(u.deadline.Sub(s.cfg.Now())+expiryGrace, func() { sconn.Close() })
		defer timer.Stop()
	}
	sem := make(chan struct{}, s.cfg.MaxChannelsPerConn)
	var wg sync.WaitGroup
	defer wg.Wait()
	// acquire bounds concurrent forwards and dial requests per connection.
	acquire := func() bool {
		select {
		case sem <- struct{}{}:
			wg.Add(1)
			return true
		default:
			return false
		}
	}
	release := func() { <-sem; wg.Done() }
	busy := fmt.Sprintf("too many concurrent connections (max %d)", s.cfg.MaxChannelsPerConn)
	go func() {
		for req := range reqs {
			if req.Type != tunnel.RequestDial {
				if req.WantReply {
					_ = req.Reply(false, nil)
				}
				continue
			}
			if !acquire() {
				_ = req.Reply(false, []byte(busy))
				continue
			}
			go func() {
				defer release()
				s.serveDialRequest(ctx, sconn, u, req)
			}()
		}
	}()
	for nc := range chans {
		if nc.ChannelType() != "direct-tcpip" {
			_ = nc.Reject(ssh.Prohibited, "this is the Warden proxy, not a shell: reach nodes through it with `warden ssh`, "+
				"`ssh -J`, or the ProxyCommand from `warden config ssh`")
			continue
		}
		if !acquire() {
			_ = nc.Reject(ssh.ResourceShortage, busy)
			continue
		}
		go func() {
			defer release()
			s.forward(ctx, sconn, u, nc)
		}()
	}
}

// route checks the user against the current state, resolves a target
// among the nodes their current roles may see, and checks locks: the node,
// its tunnel and the connection's lock subject, or an error for the user.
func (s *Server) route(ctx context.Context, u *userConn, host string) (*auth.Node, *nodeTunnel, lock.Subject, error) {
	node, t, sub, _, err := s.routeCaller(ctx, u, host)
	return node, t, sub, err
}

// routeCaller is route, also returning the current caller.
func (s *Server) routeCaller(ctx context.Context, u *userConn, host string) (*auth.Node, *nodeTunnel, lock.Subject, auth.Caller, error) {
	var none auth.Caller
	tg, err := target.ParseHost(host)
	if err != nil {
		return nil, nil, lock.Subject{}, none, err
	}
	// A removed, reset or locked user, or a revoked request, goes no
	// further, whatever the certificate still says.
	caller, err := s.cfg.Directory.CurrentCaller(ctx, u.caller, "proxy", u.remote)
	if err != nil {
		return nil, nil, lock.Subject{}, none, errors.New(lockMessage(err))
	}
	node, err := s.resolve(ctx, caller, tg)
	if err != nil {
		return nil, nil, lock.Subject{}, none, err
	}
	// A locked node (or login-independent lock) is not even reached.
	sub := caller.LockSubject()
	sub.Node, sub.NodeID = node.Name, node.ID
	if err := s.cfg.Directory.CheckLock(sub); err != nil {
		return nil, nil, lock.Subject{}, none, errors.New(lockMessage(err))
	}
	// Per-session MFA: the decision the node makes too, and one use of a
	// per-session certificate, counted in storage.
	required := s.cfg.Directory.SessionMFANeeded(caller.Roles, caller.Traits, *node)
	if err := policy.CheckSessionMFA(required, u.sessionMFA, node.ID, node.Name); err != nil {
		// Tagged for Warden clients, which then make the check and
		// connect again (a connection needs no status call before).
		var de *policy.DeniedError
		if errors.As(err, &de) && de.Code == policy.CodeSessionMFARequired {
			err = errors.New(tunnel.Tag(tunnel.CodeSessionMFA, de.Reason))
		}
		return nil, nil, lock.Subject{}, none, err
	}
	if u.sessionMFA != nil {
		if err := s.cfg.Directory.SpendSessionCert(ctx, u.serial, u.caller.Expires, u.sessionMFA.MaxSessions); err != nil {
			return nil, nil, lock.Subject{}, none, err
		}
	}
	// An agentless server's sshd knows nothing of per-session MFA: the
	// proxy's check above is the only one, so it comes first.
	if node.Agentless {
		return node, nil, sub, caller, nil // the proxy connects to its sshd (agentless.go)
	}
	t := s.reg.get(node.ID)
	if t == nil {
		// Its tunnel ends at a peer, which checks the state again.
		if t, err = s.routePeer(node); err != nil {
			return nil, nil, lock.Subject{}, none, err
		}
	}
	return node, t, sub, caller, nil
}

// forward connects one direct-tcpip channel to a node.
func (s *Server) forward(ctx context.Context, sconn *ssh.ServerConn, u *userConn, nc ssh.NewChannel) {
	var req directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	start := time.Now()
	node, t, sub, err := s.route(ctx, u, req.Host)
	if err != nil {
		refuseChannel(nc, err.Error())
		return
	}
	nodeConn, err := s.dialTarget(ctx, node, t, u, sconn.RemoteAddr().String())
	if err != nil {
		refuseChannel(nc, fmt.Sprintf("node %q did not accept the connection: %v", node.Name, err))
		return
	}
	userCh, userReqs, err := nc.Accept()
	if err != nil {
		nodeConn.Close()
		return
	}
	go ssh.DiscardRequests(userReqs)
	s.cfg.Metrics.DialSeconds.Observe(time.Since(start).Seconds())
	s.cfg.Metrics.Sessions.Inc()
	defer s.cfg.Metrics.Sessions.Dec()
	r := newRelay(sub, sconn.RemoteAddr().String(), func() {
		userCh.Close()
		nodeConn.Close()
	})
	defer s.addRelay(r)()
	relay(userCh, nodeConn)
}

// resolve finds the one node, among those the caller may access, that the
// target names.
func (s *Server) resolve(ctx context.Context, caller auth.Caller, t target.Target) (*auth.Node, error) {
	nodes, err := s.cfg.Directory.ListNodes(ctx, caller, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot list nodes: %v", err)
	}
	matches := t.Match(nodes)
	switch len(matches) {
	case 1:
		return &matches[0], nil
	case 0:
		return nil, fmt.Errorf("node %q not found (%s)", t.String(), listCandidates(nodes))
	}
	ids := ""
	for i, n := range matches {
		if i > 0 {
			ids += ", "
		}
		ids += n.Name + " (" + n.ID + ")"
	}
	return nil, fmt.Errorf("%q matches %s nodes: %s; use a node id", t.String(), strconv.Itoa(len(matches)), ids)
}

// refusalLinger bounds how long a refused jump waits for the client to
// hang up after the refusal.
const refusalLinger = 10 * time.Second

// refuseChannel answers a jump (direct-tcpip) the proxy refuses as the
// node's SSH server would refuse the client: it accepts the channel and
// sends, inside it, a disconnect with the reason (tunnel.RefusalStream). The
// user's ssh prints "Received disconnect from ...: warden: REASON". A
// rejected channel would show the reason too, but buried under the complaints
// of both ssh processes of `ssh -J` ("stdio forwarding failed",
// "kex_exchange_identification: Connection closed by remote host").
func refuseChannel(nc ssh.NewChannel, reason string) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	if _, err := ch.Write(tunnel.RefusalStream("warden: " + reason)); err != nil {
		return
	}
	// The client reads it and hangs up. Ending the channel first could
	// end `ssh -W` before the ssh it serves has written its own version and
	// key exchange offer, which would then fail on a broken pipe.
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, ch)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(refusalLinger):
	}
}
