package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/pollwait"
)

// Data connections carry a user's SSH session bytes without a second layer
// of encryption. The session between the user's ssh client and the node is
// already end to end encrypted and mutually authenticated (user and host
// certificates), so re-encrypting it on the node tunnel and on the user's
// hop to the proxy only burns CPU: it was what limited bulk throughput
// through the proxy.
//
// A data connection is a plain TCP connection to the proxy's one port that
// starts with a fixed preamble: DataMagic, a kind byte and a ticket. The
// ticket is a 256-bit random value that the proxy handed out, over an
// authenticated SSH connection, for exactly one use within a few seconds:
//
//   - node side: for each user connection the proxy sends the node, over
//     the node's tunnel, a RequestDialBack carrying a fresh ticket; the node
//     dials out (it still opens no port) and presents it. If the node does
//     not dial back in time (an older agent, or a load balancer that sent the
//     connection to another proxy), the proxy falls back to a channel on the
//     tunnel and remembers not to ask that tunnel again.
//   - user side: `warden proxy ssh` and `warden ssh` send RequestDial on their
//     SSH connection to the proxy; the proxy checks access and locks exactly
//     as for direct-tcpip, connects the node, and replies with a ticket that
//     only a connection from the same IP address may redeem. The proxy then
//     splices the two TCP connections in the kernel.
//
// Someone who could read a ticket off the wire and race to use it would
// reach only the node's SSH server (or the user's ssh client), which still
// demands a valid certificate (or host certificate) in the end-to-end
// handshake.
const (
	// DataMagic starts every data connection.
	DataMagic = "WDAT"
	// RequestDialBack is the proxy's global request on a node tunnel asking
	// the node to open a data connection; payload DialBackPayload (JSON).
	RequestDialBack = "dial-back@warden.dev"
	// RequestDial is a user's global request for a data connection to a
	// node; payload: the target as an SSH string; reply: the ticket.
	RequestDial = "dial@warden.dev"

	dataKindNode = 'n'
	dataKindUser = 'u'
	ticketBytes  = 32
	preambleLen  = len(DataMagic) + 1 + 2*ticketBytes + 1

	// dialBackTimeout bounds how long the proxy waits for a node's data
	// connection before it falls back to the tunnel.
	dialBackTimeout = 3 * time.Second
	// userTicketTTL bounds how long a user ticket may wait to be redeemed.
	userTicketTTL = 15 * time.Second
	// maxUserTickets bounds unredeemed user tickets (each holds a node
	// connection).
	maxUserTickets = 4096

	dataStatusOK = 0
)

// DialBackPayload is the payload of RequestDialBack.
type DialBackPayload struct {
	Ticket     string
	ClientAddr string
	User       string
}

// dialReply is the reply payload of RequestDial.
type dialReply struct {
	Ticket string
}

func newTicket() string {
	b := make([]byte, ticketBytes)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// preamble renders the first bytes of a data connection.
func preamble(kind byte, ticket string) []byte {
	b := make([]byte, 0, preambleLen)
	b = append(b, DataMagic...)
	b = append(b, kind)
	b = append(b, ticket...)
	return append(b, '\n')
}

// parsePreamble validates the fixed-size preamble of a data connection.
func parsePreamble(b []byte) (kind byte, ticket string, err error) {
	if len(b) != preambleLen || string(b[:len(DataMagic)]) != DataMagic || b[len(b)-1] != '\n' {
		return 0, "", errors.New("malformed data preamble")
	}
	kind = b[len(DataMagic)]
	if kind != dataKindNode && kind != dataKindUser {
		return 0, "", errors.New("unknown data connection kind")
	}
	ticket = string(b[len(DataMagic)+1 : len(b)-1])
	if raw, err := hex.DecodeString(ticket); err != nil || hex.EncodeToString(raw) != ticket {
		return 0, "", errors.New("malformed ticket")
	}
	return kind, ticket, nil
}

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

// ServeData handles data connections (those starting with DataMagic) from
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
	case dataKindNode:
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
	case dataKindUser:
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
	b := make([]byte, preambleLen)
	if _, err := io.ReadFull(c, b); err != nil {
		return 0, "", err
	}
	_ = c.SetReadDeadline(time.Time{})
	return parsePreamble(b)
}

// dialNode connects one user connection to a node: a data connection when
// the node can dial back, otherwise a channel on its tunnel.
func (s *Server) dialNode(ctx context.Context, t *tunnel, clientAddr, user string) (net.Conn, error) {
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
	payload, _ := json.Marshal(NodeConnPayload{ClientAddr: clientAddr, User: user})
	ch, reqs, err := t.conn.OpenChannel(ChannelNodeConn, payload)
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	s.cfg.Metrics.DataConns.WithLabelValues("tunnel").Inc()
	return &channelConn{Channel: ch, local: t.conn.LocalAddr(), remote: t.conn.RemoteAddr()}, nil
}

func (s *Server) dialBack(ctx context.Context, t *tunnel, clientAddr, user string) (net.Conn, error) {
	ticket := newTicket()
	ch := make(chan net.Conn, 1)
	s.data.mu.Lock()
	s.data.pending[ticket] = ch
	s.data.mu.Unlock()
	payload, _ := json.Marshal(DialBackPayload{Ticket: ticket, ClientAddr: clientAddr, User: user})
	ok, reply, err := t.conn.SendRequest(RequestDialBack, true, payload)
	if err == nil && !ok {
		err = fmt.Errorf("node refused: %s", reply)
	}
	if err == nil {
		timer := time.NewTimer(dialBackTimeout)
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

// serveDialRequest answers a user's RequestDial: it connects the node and
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
	node, t, sub, err := s.route(ctx, u, target.Host)
	if err != nil {
		_ = req.Reply(false, []byte(err.Error()))
		return
	}
	start := time.Now()
	nc, err := s.dialNode(ctx, t, sconn.RemoteAddr().String(), u.caller.User)
	if err != nil {
		_ = req.Reply(false, []byte(fmt.Sprintf("node %q did not accept the connection: %v", node.Name, err)))
		return
	}
	s.cfg.Metrics.DialSeconds.Observe(time.Since(start).Seconds())
	ticket := newTicket()
	ut := &userTicket{remote: remote, node: nc, deadline: u.deadline, relay: newRelay(sub, sconn.RemoteAddr().String(), nil)}
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
	_ = req.Reply(true, ssh.Marshal(dialReply{Ticket: ticket}))
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
	if _, err := c.Write([]byte{dataStatusOK}); err != nil {
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

// DialData asks the proxy, over the user's SSH connection pc, for a data
// connection to target and returns it, ready to carry an SSH session.
// proxyAddr is the proxy's address. errors.Is(err, ErrNoDataConns) tells
// a proxy that does not offer them.
func DialData(ctx context.Context, pc ssh.Conn, proxyAddr, target string) (net.Conn, error) {
	ok, reply, err := pc.SendRequest(RequestDial, true, ssh.Marshal(struct{ Host string }{target}))
	if err != nil {
		return nil, err
	}
	if !ok {
		if len(reply) == 0 {
			return nil, ErrNoDataConns
		}
		return nil, &DialError{Msg: string(reply)}
	}
	var r dialReply
	if err := ssh.Unmarshal(reply, &r); err != nil {
		return nil, fmt.Errorf("proxy dial reply: %w", err)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(preamble(dataKindUser, r.Ticket)); err != nil {
		c.Close()
		return nil, err
	}
	// One byte of status, read alone: the node's SSH banner follows at once.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	status := make([]byte, 1)
	if _, err := io.ReadFull(c, status); err != nil {
		c.Close()
		return nil, fmt.Errorf("proxy data connection: %w", err)
	}
	if status[0] != dataStatusOK {
		msg := make([]byte, 256)
		n, _ := c.Read(msg)
		c.Close()
		return nil, fmt.Errorf("proxy refused the data connection: %s", strings.TrimSpace(string(msg[:n])))
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// ErrNoDataConns is returned by DialData when the proxy does not offer data
// connections; use a direct-tcpip channel instead.
var ErrNoDataConns = errors.New("the proxy does not offer data connections")

// DialError is the proxy's refusal to connect a node (access, lock,
// unknown target), meant for the user.
type DialError struct{ Msg string }

func (e *DialError) Error() string { return e.Msg }
