package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/pollwait"
	"github.com/warden-sh/warden/internal/tunnel"
)

const (
	// userTicketTTL bounds how long a user ticket may wait to be redeemed.
	userTicketTTL = 15 * time.Second
	// maxUserTickets bounds unredeemed user tickets (each holds a node
	// connection).
	maxUserTickets = 4096
)

// userTicket is a node connection waiting for the user's data connection.
type userTicket struct {
	remote netip.Addr
	node   net.Conn
	// relay describes the connection for lock checks; its cut is set on
	// redemption.
	relay *liveRelay
	timer *time.Timer
	// deadline is when the user's certificate expires (zero: never).
	deadline time.Time
}

type dataState struct {
	mu sync.Mutex
	// pending are node data connections the proxy waits for, by ticket.
	// Only the node asked knows the ticket (it went over that node's
	// tunnel), so the ticket alone identifies the node.
	pending map[string]chan net.Conn
	users   map[string]*userTicket
}

// ServeData handles data connections (those starting with tunnel.DataMagic) from
// ln until it is closed.
func (s *Server) ServeData(ln net.Listener) error {
	return s.acceptLoop(ln, s.handleData)
}

func (s *Server) handleData(c net.Conn) {
	kind, ticket, err := readPreamble(c, s.cfg.HandshakeTimeout)
	<-s.unauth
	if err != nil {
		s.log.Debug("data connection refused", "remote", c.RemoteAddr().String(), "err", err)
		s.untrack(c)
		return
	}
	switch kind {
	case tunnel.DataKindNode:
		s.data.mu.Lock()
		ch := s.data.pending[ticket]
		delete(s.data.pending, ticket)
		s.data.mu.Unlock()
		if ch == nil {
			s.log.Debug("node data connection with an unknown ticket", "remote", c.RemoteAddr().String())
			s.untrack(c)
			return
		}
		// The connection now belongs to the forward that asked for it, which
		// closes it; Close reaches it through the user's side.
		s.forget(c)
		ch <- c
	case tunnel.DataKindUser:
		s.redeemUserTicket(c, ticket)
	}
}

// closeTickets closes the node connections of unredeemed user tickets.
func (s *Server) closeTickets() {
	s.data.mu.Lock()
	defer s.data.mu.Unlock()
	for k, ut := range s.data.users {
		ut.timer.Stop()
		ut.node.Close()
		delete(s.data.users, k)
	}
}

// readPreamble reads and validates a data connection's preamble.
func readPreamble(c net.Conn, timeout time.Duration) (byte, string, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	b := make([]byte, tunnel.PreambleLen)
	if _, err := io.ReadFull(c, b); err != nil {
		return 0, "", err
	}
	_ = c.SetReadDeadline(time.Time{})
	return tunnel.ParsePreamble(b)
}

// dialNode connects one user connection to a node: a data connection when
// the node can dial back, otherwise a channel on its tunnel.
func (s *Server) dialNode(ctx context.Context, t *nodeTunnel, clientAddr, user string) (net.Conn, error) {
	if !t.noDialBack.Load() {
		c, err := s.dialBack(ctx, t, clientAddr, user)
		if err == nil {
			s.cfg.Metrics.DataConns.WithLabelValues("direct").Inc()
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		t.noDialBack.Store(true)
		s.log.Info("node did not dial back; using its tunnel for sessions", "node", t.node.Name, "err", err)
	}
	payload, _ := json.Marshal(tunnel.NodeConnPayload{ClientAddr: clientAddr, User: user})
	ch, reqs, err := t.conn.OpenChannel(tunnel.ChannelNodeConn, payload)
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	s.cfg.Metrics.DataConns.WithLabelValues("tunnel").Inc()
	return tunnel.ChannelConn(ch, t.conn.LocalAddr(), t.conn.RemoteAddr()), nil
}

func (s *Server) dialBack(ctx context.Context, t *nodeTunnel, clientAddr, user string) (net.Conn, error) {
	ticket := tunnel.NewTicket()
	ch := make(chan net.Conn, 1)
	s.data.mu.Lock()
	s.data.pending[ticket] = ch
	s.data.mu.Unlock()
	payload, _ := json.Marshal(tunnel.DialBackPayload{Ticket: ticket, ClientAddr: clientAddr, User: user})
	ok, reply, err := t.conn.SendRequest(tunnel.RequestDialBack, true, payload)
	if err == nil && !ok {
		err = fmt.Errorf("node refused: %s", reply)
	}
	if err == nil {
		timer := time.NewTimer(tunnel.DialBackTimeout)
		defer timer.Stop()
		select {
		case c := <-ch:
			return c, nil
		case <-timer.C:
			err = errors.New("timed out")
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	s.data.mu.Lock()
	_, mine := s.data.pending[ticket]
	delete(s.data.pending, ticket)
	s.data.mu.Unlock()
	if !mine {
		// The connection arrived as we gave up: it is on its way.
		c := <-ch
		if err == nil || ctx.Err() == nil {
			return c, nil
		}
		c.Close()
	}
	return nil, err
}

// serveDialRequest answers a user's tunnel.RequestDial: it connects the node and
// returns a ticket for the user's data connection.
func (s *Server) serveDialRequest(ctx context.Context, sconn *ssh.ServerConn, u *userConn, req *ssh.Request) {
	var target struct{ Host string }
	if len(req.Payload) > 1024 || ssh.Unmarshal(req.Payload, &target) != nil {
		_ = req.Reply(false, []byte("malformed dial request"))
		return
	}
	remote, ok := addrOf(sconn.RemoteAddr())
	if !ok {
		_ = req.Reply(false, []byte("data connections need a TCP client"))
		return
	}
	node, t, sub, caller, err := s.routeCaller(ctx, u, target.Host)
	if err != nil {
		_ = req.Reply(false, []byte(err.Error()))
		return
	}
	deadline := u.deadline
	if caller.KeepPastExpiry {
		// The roles keep sessions past the certificate (a bot renewing
		// under a live session): the node decides, locks still cut.
		deadline = time.Time{}
	}
	start := time.Now()
	nc, err := s.dialTarget(ctx, node, t, u, sconn.RemoteAddr().String())
	if err != nil {
		_ = req.Reply(false, []byte(fmt.Sprintf("node %q did not accept the connection: %v", node.Name, err)))
		return
	}
	s.cfg.Metrics.DialSeconds.Observe(time.Since(start).Seconds())
	ticket := tunnel.NewTicket()
	ut := &userTicket{remote: remote, node: nc, deadline: deadline, relay: newRelay(sub, sconn.RemoteAddr().String(), nil)}
	s.data.mu.Lock()
	if len(s.data.users) >= maxUserTickets {
		s.data.mu.Unlock()
		nc.Close()
		_ = req.Reply(false, []byte("the proxy is busy; try again"))
		return
	}
	s.data.users[ticket] = ut
	ut.timer = time.AfterFunc(userTicketTTL, func() {
		s.data.mu.Lock()
		_, unclaimed := s.data.users[ticket]
		delete(s.data.users, ticket)
		s.data.mu.Unlock()
		if unclaimed {
			nc.Close()
		}
	})
	s.data.mu.Unlock()
	_ = req.Reply(true, ssh.Marshal(tunnel.DialReply{Ticket: ticket}))
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ap := ta.AddrPort()
	return ap.Addr().Unmap(), true
}

// redeemUserTicket joins a user's data connection to the node connection
// its ticket holds.
func (s *Server) redeemUserTicket(c net.Conn, ticket string) {
	defer s.untrack(c)
	remote, _ := addrOf(c.RemoteAddr())
	s.data.mu.Lock()
	ut := s.data.users[ticket]
	if ut != nil && ut.remote == remote {
		delete(s.data.users, ticket)
	} else {
		ut = nil
	}
	s.data.mu.Unlock()
	if ut == nil {
		s.log.Debug("user data connection with an unknown ticket", "remote", c.RemoteAddr().String())
		_, _ = c.Write([]byte("\x01unknown or expired ticket\n"))
		return
	}
	ut.timer.Stop()
	defer ut.node.Close()
	if _, err := c.Write([]byte{tunnel.DataStatusOK}); err != nil {
		return
	}
	if !ut.deadline.IsZero() {
		timer := time.AfterFunc(ut.deadline.Sub(s.cfg.Now())+expiryGrace, func() {
			c.Close()
			ut.node.Close()
		})
		defer timer.Stop()
	}
	s.cfg.Metrics.Sessions.Inc()
	defer s.cfg.Metrics.Sessions.Dec()
	ut.relay.cut = func() {
		c.Close()
		ut.node.Close()
	}
	defer s.addRelay(ut.relay)()
	relay(c, ut.node)
}

// relay joins a user's connection to a node's, copying both ways and
// half-closing as each side finishes. Node to user, between two TCP
// connections, io.Copy moves the bytes in the kernel (splice(2)). User to
// node goes through the user connection's quick-ACK wrapper: the OpenSSH
// client writes with Nagle's algorithm on, and a delayed ACK here would
// stall each round trip of its handshake by 40 ms.
func relay(user io.ReadWriteCloser, node net.Conn) {
	userW, _ := unwrap(user)
	nodeRaw, pending := unwrap(node)
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst io.ReadWriteCloser, src io.Reader, pending []byte) {
		defer wg.Done()
		var err error
		if len(pending) > 0 {
			_, err = dst.Write(pending)
		}
		if err == nil {
			if _, isConn := dst.(net.Conn); isConn {
				_, _ = io.Copy(dst, src)
			} else {
				copyIntoChannel(dst, src)
			}
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(nodeRaw, readerOnly{user}, nil)
	go cp(userW, nodeRaw, pending)
	wg.Wait()
	userW.Close()
	nodeRaw.Close()
}

// channelBufs and firstBufs are copyIntoChannel's buffers.
var (
	channelBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
	firstBufs   = sync.Pool{New: func() any { b := make([]byte, 4<<10); return &b }}
)

// copyIntoChannel copies src into an SSH channel (ssh -J) until src ends
// or dst fails. Large reads make full-size packets and fewer system calls,
// but a 256 KiB buffer for every live session would be most of a proxy's
// memory per session. So a session holds no buffer while src is idle: once
// it has data, a first read takes a small buffer (most wake-ups bring a
// few bytes: keystrokes' echo, a screen update, the end), and only a read
// that fills it moves on to large ones, until a read comes up short. (A
// source without a file descriptor, a node-conn channel on a tunnel, keeps
// one large buffer throughout.)
func copyIntoChannel(dst io.Writer, src io.Reader) {
	var rc syscall.RawConn
	if sc, ok := src.(syscall.Conn); ok {
		if c, err := sc.SyscallConn(); err == nil {
			rc = c
		}
	}
	if rc == nil {
		buf := channelBufs.Get().(*[]byte)
		defer channelBufs.Put(buf)
		_, _ = io.CopyBuffer(dst, readerOnly{src}, *buf)
		return
	}
	for {
		if pollwait.Readable(rc) != nil {
			return
		}
		full, err := copyOnce(dst, src, &firstBufs)
		for err == nil && full {
			full, err = copyOnce(dst, src, &channelBufs)
		}
		if err != nil {
			return
		}
	}
}

// copyOnce moves one read of src, made into a buffer from pool, to dst.
// full reports that the read filled the buffer: more is likely waiting.
func copyOnce(dst io.Writer, src io.Reader, pool *sync.Pool) (full bool, err error) {
	buf := pool.Get().(*[]byte)
	defer pool.Put(buf)
	n, err := src.Read(*buf)
	if n > 0 {
		if _, werr := dst.Write((*buf)[:n]); werr != nil {
			return false, werr
		}
	}
	return n == len(*buf), err
}

// readerOnly hides everything but Read, so io.Copy reads through it.
type readerOnly struct{ io.Reader }

// unwrap strips the mux's and quickack's wrappers so that the kernel can
// splice, returning what the mux had already read and not yet delivered.
func unwrap(c io.ReadWriteCloser) (io.ReadWriteCloser, []byte) {
	var pending []byte
	for {
		switch w := c.(type) {
		case *peekedConn:
			if n := w.r.Buffered(); n > 0 {
				b, _ := w.r.Peek(n)
				pending = append(pending, b...)
			}
			c = w.Conn
		case interface{ Unwrap() net.Conn }:
			c = w.Unwrap()
		default:
			return c, pending
		}
	}
}
