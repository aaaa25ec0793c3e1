package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
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

func (s *Server) serveUser(sconn *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	id := sconn.Permissions.ExtraData[identityKey{}].(*ca.CertIdentity)
	cert := sconn.Permissions.ExtraData[certKey{}].(*ssh.Certificate)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ssh.DiscardRequests(reqs)
	// The proxy connection does not outlive the certificate. The grace
	// period lets the node end its sessions first, with a message the user
	// sees, rather than the jump connection vanishing silently.
	if cert.ValidBefore != ssh.CertTimeInfinity {
		left := time.Unix(int64(cert.ValidBefore), 0).Sub(s.cfg.Now()) + expiryGrace
		timer := time.AfterFunc(left, func() { sconn.Close() })
		defer timer.Stop()
	}
	caller := auth.Caller{Kind: auth.KindUser, User: id.Username, Roles: id.Roles, Traits: id.Traits}
	requests := id.RequestIDs
	sem := make(chan struct{}, s.cfg.MaxChannelsPerConn)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "direct-tcpip" {
			_ = nc.Reject(ssh.Prohibited, "this is the Warden proxy, not a shell: reach nodes through it with `warden ssh`, "+
				"`ssh -J`, or the ProxyCommand from `warden config ssh`")
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("too many concurrent connections (max %d)", s.cfg.MaxChannelsPerConn))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.forward(ctx, sconn, caller, requests, nc)
		}()
	}
}

// forward connects one direct-tcpip channel to a node through its tunnel.
func (s *Server) forward(ctx context.Context, sconn *ssh.ServerConn, caller auth.Caller, requests []string, nc ssh.NewChannel) {
	var req directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	target, err := ParseTarget(req.Host)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	start := time.Now()
	node, err := s.resolve(ctx, caller, target)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	// A locked user (role, request, node) does not even reach the node.
	if err := s.cfg.Directory.CheckLock(lock.Subject{User: caller.User, Roles: caller.Roles, Requests: requests,
		Node: node.Name, NodeID: node.ID}); err != nil {
		_ = nc.Reject(ssh.Prohibited, strings.TrimPrefix(err.Error(), auth.ErrAccessDenied.Error()+": "))
		return
	}
	t := s.reg.get(node.ID)
	if t == nil {
		_ = nc.Reject(ssh.ConnectionFailed, fmt.Sprintf("node %q is not connected to this proxy", node.Name))
		return
	}
	payload, _ := json.Marshal(NodeConnPayload{ClientAddr: sconn.RemoteAddr().String(), User: caller.User})
	nodeCh, nodeReqs, err := t.conn.OpenChannel(ChannelNodeConn, payload)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, fmt.Sprintf("node %q did not accept the connection: %v", node.Name, err))
		return
	}
	go ssh.DiscardRequests(nodeReqs)
	userCh, userReqs, err := nc.Accept()
	if err != nil {
		nodeCh.Close()
		return
	}
	go ssh.DiscardRequests(userReqs)
	s.cfg.Metrics.DialSeconds.Observe(time.Since(start).Seconds())
	s.cfg.Metrics.Sessions.Inc()
	defer s.cfg.Metrics.Sessions.Dec()
	pipe(userCh, nodeCh)
}

// pipe copies both ways, half-closing as each side finishes.
func pipe(a, b ssh.Channel) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src ssh.Channel) {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		_, _ = io.CopyBuffer(dst, src, buf)
		_ = dst.CloseWrite()
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// resolve finds the one node, among those the caller may access, that the
// target names.
func (s *Server) resolve(ctx context.Context, caller auth.Caller, t Target) (*auth.Node, error) {
	nodes, err := s.cfg.Directory.ListNodes(ctx, caller, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot list nodes: %v", err)
	}
	var matches []auth.Node
	for _, n := range nodes {
		switch {
		case t.LabelKey != "":
			if v, ok := n.Labels[t.LabelKey]; ok && v == t.LabelValue {
				matches = append(matches, n)
			}
		case n.ID == t.Node:
			return &n, nil
		case n.Name == t.Node || n.Hostname == t.Node:
			matches = append(matches, n)
		}
	}
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
