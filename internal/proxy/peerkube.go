package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/auth"
)

// Kubernetes through a peer: a kubectl request arrives at proxy B for a
// cluster whose kube agent is connected to proxy A. B checks the user
// (current state), the locks and decides the request as for a cluster of
// its own, so that it refuses early; then it forwards the request to A
// over the peer link (a PeerDial with Kube set, then the one HTTP/1.1
// request on the connection). A trusts nothing B decided: it checks the
// user's current state and the locks again, decides the request again
// itself from the request it actually received, and forwards it to the
// agent with its own decision (kube.go serveKubeAs). Refused at either,
// the request is refused. Both proxies cut a live request (watch, logs,
// exec) on a lock; exec and attach sessions are recorded at A, which
// reaches the agent.

// servePeerKube serves a forwarded Kubernetes request (handlePeer has
// checked the user's certificate and current state).
func (s *Server) servePeerKube(tc *tls.Conn, peerID string, req *PeerDial, caller auth.Caller, refuse func(string)) {
	agent, cluster, ok := s.kube.cluster(req.Kube)
	if !ok || agent.id != req.NodeID {
		refuse("kubernetes cluster " + req.Kube + " is not connected to proxy " + s.peers.cfg.ID)
		return
	}
	sub := caller.LockSubject()
	sub.Node = cluster.Name
	if err := s.cfg.Directory.CheckLock(sub); err != nil {
		refuse(lockMessage(err))
		return
	}
	if _, err := tc.Write([]byte{peerStatusOK}); err != nil {
		return
	}
	certCaller := req.Caller.caller()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.serveKubeAs(w, r, certCaller, req.ClientAddr, peerID)
		}),
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	_ = srv.Serve(newOneConnListener(tc))
}

// peerKubeTransport is the transport of one Kubernetes request forwarded
// to peer pr: each request on a connection of its own. If pr cannot be
// reached (connection or handshake failed: it may have just died, its
// record not yet expired), the request is sent through the other live
// peers through which the same cluster (same name and labels, as decided
// here) is connected, at most maxPeerTries peers in all; a peer's refusal
// is final. Nothing of the request is sent before a peer accepted the
// dial, so a retry never sends it twice; exec and attach streams are
// retried at their start only.
func (s *Server) peerKubeTransport(pr proxyRecord, cluster auth.KubeCluster, c auth.Caller, clientAddr string) http.RoundTripper {
	caller := peerCallerOf(c)
	return &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return s.dialPeersKube(ctx, pr, cluster, caller, clientAddr)
		},
		MaxResponseHeaderBytes: 1 << 20,
	}
}

// dialPeersKube dials first for a cluster, then the other live peers
// serving it if first cannot be reached (see peerKubeTransport).
func (s *Server) dialPeersKube(ctx context.Context, first proxyRecord, cluster auth.KubeCluster, caller PeerCaller, clientAddr string) (net.Conn, error) {
	tried := map[string]bool{}
	pr, agentID := first, cluster.AgentID
	var errs []error
	for {
		tried[pr.ID] = true
		d := &PeerDial{NodeID: agentID, Kube: cluster.Name, ClientAddr: clientAddr, Caller: caller}
		c, err := s.dialPeerWith(ctx, pr, d)
		var refused errPeerRefused
		if err == nil || errors.As(err, &refused) || ctx.Err() != nil {
			return c, err
		}
		s.peers.markUnreachable(pr.ID)
		errs = append(errs, err)
		s.log.Warn("peer unreachable; trying the kubernetes cluster elsewhere", "peer", pr.ID, "cluster", cluster.Name, "err", err)
		next := false
		for _, o := range s.peers.kubeOwners(cluster.Name) {
			if !tried[o.proxy.ID] && maps.Equal(o.cluster.Labels, cluster.Labels) {
				pr, agentID, next = o.proxy, o.cluster.AgentID, true
				break
			}
		}
		if !next || len(tried) >= maxPeerTries {
			return nil, fmt.Errorf("no proxy through which it is connected could be reached (%d tried): %w", len(tried), errors.Join(errs...))
		}
	}
}

// oneConnListener serves one connection: Accept returns it once, then
// waits until it is closed.
type oneConnListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
	taken  bool
	mu     sync.Mutex
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{closed: make(chan struct{})}
	l.conn = &notifyCloseConn{Conn: c, onClose: func() { l.once.Do(func() { close(l.closed) }) }}
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.taken {
		l.taken = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

type notifyCloseConn struct {
	net.Conn
	onClose func()
}

func (c *notifyCloseConn) Close() error {
	err := c.Conn.Close()
	c.onClose()
	return err
}

// errIsPeerRefusal tells a peer's refusal (the user's request refused
// there) from a failure to reach it.
func errIsPeerRefusal(err error) (string, bool) {
	var refused errPeerRefused
	if errors.As(err, &refused) {
		return string(refused), true
	}
	return "", false
}
