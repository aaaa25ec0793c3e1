package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
)

// peerRoute is a node reached through the peer holding its tunnel.
type peerRoute struct {
	proxy proxyRecord
}

// ServePeers handles peer connections (mutual TLS, proxies only) from ln
// until it is closed. Without peering it refuses to start.
func (s *Server) ServePeers(ln net.Listener) error {
	if s.peers == nil {
		return errors.New("proxy: peering is off")
	}
	cfg := s.peers.serverTLS()
	return s.acceptLoop(ln, func(c net.Conn) {
		defer s.untrack(c)
		s.handlePeer(c, cfg)
	})
}

// handlePeer serves one forwarded dial: it checks the current state again
// (the user, their requests, locks on the user and on the node), connects
// the node over its tunnel here, and relays, cutting on a lock as for a
// user's own connection.
func (s *Server) handlePeer(c net.Conn, cfg *tls.Config) {
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	tc := tls.Server(c, cfg)
	err := tc.Handshake()
	<-s.unauth
	if err != nil {
		s.log.Info("peer connection refused", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	peerID, err := ca.VerifyProxyPeer(tc.ConnectionState().PeerCertificates, s.peers.cfg.Roots(), x509.ExtKeyUsageClientAuth, time.Now())
	if err != nil { // VerifyConnection checked it; never reached
		return
	}
	// The peer must be current: registered among the live peers (a proxy
	// revoked or gone cannot renew its record) and not locked
	// (`warden lock --node PROXY-ID`); its certificate alone is not enough.
	if !s.peers.live(peerID) {
		s.log.Warn("peer connection refused: not a live peer", "peer", peerID, "remote", c.RemoteAddr().String())
		_, _ = tc.Write(peerRefusal("proxy " + peerID + " is not a live peer"))
		return
	}
	if err := s.cfg.Directory.CheckLock(lock.Subject{NodeID: peerID}); err != nil {
		s.log.Warn("peer connection refused: locked", "peer", peerID, "remote", c.RemoteAddr().String(), "err", err)
		_, _ = tc.Write(peerRefusal("proxy " + peerID + " is locked"))
		return
	}
	req, err := readPeerDial(tc)
	if err != nil {
		s.log.Warn("peer dial refused", "peer", peerID, "remote", c.RemoteAddr().String(), "err", err)
		_, _ = tc.Write(peerRefusal("malformed peer dial"))
		return
	}
	// Connecting the node may take up to tunnel.DialBackTimeout; the
	// dialling proxy bounds its wait.
	_ = c.SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	refuse := func(msg string) {
		_, _ = tc.Write(peerRefusal(msg))
	}
	// The peer decided the dial; the state may have changed since (or
	// differ here): the certificate's validity, the user, their requests
	// and locks are checked again.
	if exp := req.Caller.Expires; !exp.IsZero() && !s.cfg.Now().Before(exp) {
		refuse("your certificate has expired; run warden login")
		return
	}
	caller, err := s.cfg.Directory.CurrentCaller(ctx, req.Caller.caller(), "proxy-peer", req.ClientAddr)
	if err != nil {
		refuse(lockMessage(err))
		return
	}
	if req.Kube != "" {
		s.servePeerKube(tc, peerID, req, caller, refuse)
		return
	}
	if req.KubeSession != "" {
		s.servePeerKubeJoin(tc, peerID, req, refuse)
		return
	}
	t := s.reg.get(req.NodeID)
	if t == nil {
		refuse(fmt.Sprintf("node %s is not connected to proxy %s", req.NodeID, s.peers.cfg.ID))
		return
	}
	node := t.snapshot()
	sub := caller.LockSubject()
	sub.Node, sub.NodeID = node.Name, node.ID
	if err := s.cfg.Directory.CheckLock(sub); err != nil {
		refuse(lockMessage(err))
		return
	}
	nc, err := s.dialNode(ctx, t, req.ClientAddr, caller.User)
	if err != nil {
		refuse(fmt.Sprintf("node %q did not accept the connection: %v", node.Name, err))
		return
	}
	defer nc.Close()
	if _, err := tc.Write([]byte{peerStatusOK}); err != nil {
		return
	}
	if !req.Deadline.IsZero() && !caller.KeepPastExpiry {
		timer := time.AfterFunc(req.Deadline.Sub(s.cfg.Now())+expiryGrace, func() {
			tc.Close()
			nc.Close()
		})
		defer timer.Stop()
	}
	s.cfg.Metrics.Sessions.Inc()
	defer s.cfg.Metrics.Sessions.Dec()
	r := newRelay(sub, req.ClientAddr, func() {
		tc.Close()
		nc.Close()
	})
	defer s.addRelay(r)()
	relay(tc, nc)
}

// routePeer finds the peer holding a node's tunnel.
func (s *Server) routePeer(node *auth.Node) (*nodeTunnel, error) {
	if s.peers != nil {
		if pr, _, ok := s.peers.owner(node.ID); ok {
			return &nodeTunnel{peer: &peerRoute{proxy: pr}, node: *node}, nil
		}
	}
	return nil, fmt.Errorf("node %q is not connected to any proxy", node.Name)
}

// dialPeers connects a user's connection to a node through first, the
// peer found holding its tunnel; if first cannot be reached (it may have
// just died, its record not yet expired) the dial is tried through the
// other live peers holding the node's tunnel, or the tunnel here if the
// node has reconnected to this proxy. A peer's refusal is final.
func (s *Server) dialPeers(ctx context.Context, first proxyRecord, n *auth.Node, u *userConn, clientAddr string) (net.Conn, error) {
	tried := map[string]bool{}
	pr := first
	var errs []error
	for {
		tried[pr.ID] = true
		c, err := s.dialPeer(ctx, pr, n, u, clientAddr)
		var refused errPeerRefused
		if err == nil || errors.As(err, &refused) || ctx.Err() != nil {
			return c, err
		}
		s.peers.markUnreachable(pr.ID)
		errs = append(errs, err)
		s.log.Warn("peer unreachable; trying the node elsewhere", "peer", pr.ID, "node_id", n.ID, "err", err)
		if t := s.reg.get(n.ID); t != nil {
			return s.dialNode(ctx, t, clientAddr, u.caller.User)
		}
		next := false
		for _, o := range s.peers.owners(n.ID) {
			if !tried[o.proxy.ID] {
				pr, next = o.proxy, true
				break
			}
		}
		if !next || len(tried) >= maxPeerTries {
			return nil, errors.Join(errs...)
		}
	}
}

// maxPeerTries bounds the peers one dial tries.
const maxPeerTries = 3

// dialPeer connects a user's connection to a node through the peer that
// holds its tunnel, forwarding the decided dial.
func (s *Server) dialPeer(ctx context.Context, pr proxyRecord, n *auth.Node, u *userConn, clientAddr string) (net.Conn, error) {
	return s.dialPeerWith(ctx, pr, &PeerDial{NodeID: n.ID, ClientAddr: clientAddr, Caller: peerCallerOf(u.caller), Deadline: u.deadline})
}

// dialPeerWith sends a forwarded dial to peer pr and returns the
// connection after its OK.
func (s *Server) dialPeerWith(ctx context.Context, pr proxyRecord, d *PeerDial) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(d.ClientAddr); err != nil {
		return nil, fmt.Errorf("client address: %w", err)
	}
	frame, err := encodePeerDial(d)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerDialTimeout)
	defer cancel()
	hctx, hcancel := context.WithTimeout(ctx, peerConnectTimeout)
	defer hcancel()
	var dialer net.Dialer
	raw, err := dialer.DialContext(hctx, "tcp", pr.Addr)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", pr.ID, err)
	}
	tc := tls.Client(raw, s.peers.clientTLS(pr.ID))
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	err = tc.HandshakeContext(hctx)
	if err == nil {
		_, err = tc.Write(frame)
	}
	if err == nil {
		err = readPeerReply(tc)
	}
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		raw.Close()
		var refused errPeerRefused
		if errors.As(err, &refused) {
			return nil, refused
		}
		return nil, fmt.Errorf("through proxy %s: %w", pr.ID, err)
	}
	s.cfg.Metrics.DataConns.WithLabelValues("peer").Inc()
	return tc, nil
}
