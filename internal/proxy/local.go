package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// DialLocal connects to the proxy's SSH side in process, for a server in
// the same process that connects on a user's behalf (the web terminal),
// and returns the client's end; with data, to its data connection side
// instead (tunnel.DialDataVia), where the node's connection is relayed
// without the proxy's SSH layer. The proxy sees clientAddr (the browser's
// address, host:port) as the connection's remote address: its checks and
// audit, and the node's session, name the user's address rather than this
// process's. Only code in the process can make such a connection; nothing
// a client sends can set the address.
func (s *Server) DialLocal(clientAddr string, data bool) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(clientAddr)
	if err != nil {
		return nil, fmt.Errorf("proxy: client address %q: %w", clientAddr, err)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("proxy: socketpair: %w", err)
	}
	client, err := fileConn(fds[0], "warden-proxy-client")
	if err != nil {
		syscall.Close(fds[1])
		return nil, err
	}
	sc, err := fileConn(fds[1], "warden-proxy-server")
	if err != nil {
		client.Close()
		return nil, err
	}
	server := &localConn{Conn: sc, remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))}
	select {
	case s.unauth <- struct{}{}:
	default:
		client.Close()
		server.Close()
		return nil, errors.New("proxy: too many unauthenticated connections")
	}
	if !s.track(server) {
		<-s.unauth
		client.Close()
		server.Close()
		return nil, net.ErrClosed
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if data {
			s.handleData(server) // untracks it
			return
		}
		defer s.untrack(server)
		s.handle(server)
	}()
	return client, nil
}

func fileConn(fd int, name string) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close() // FileConn dups the descriptor
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("proxy: socketpair: %w", err)
	}
	return c, nil
}

// localConn is the proxy's end of an in-process connection, with the
// address of the client it was made for.
type localConn struct {
	net.Conn
	remote net.Addr
}

func (c *localConn) RemoteAddr() net.Addr { return c.remote }

// RedeemLocal redeems a user data ticket (tunnel.RequestDial) for a
// server in the proxy's process (the web terminal) and returns the node's
// connection itself: the ticket's checks are those of a data connection to
// the proxy's port (one use, within its time, from the address the ticket
// was issued to: clientAddr, as given to DialLocal), and the connection is
// held as a relayed one is (a lock cuts it, the certificate's expiry ends
// it, the proxy's shutdown closes it, the active sessions gauge counts
// it), but no socket pair and no copy through this process stand between
// the node's bytes and their reader: every byte and keystroke saves a hop
// and two goroutine wake-ups.
func (s *Server) RedeemLocal(clientAddr, ticket string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(clientAddr)
	if err != nil {
		return nil, fmt.Errorf("proxy: client address %q: %w", clientAddr, err)
	}
	s.data.mu.Lock()
	ut := s.data.users[ticket]
	if ut != nil && ut.remote == ap.Addr().Unmap() {
		delete(s.data.users, ticket)
	} else {
		ut = nil
	}
	s.data.mu.Unlock()
	if ut == nil {
		return nil, errors.New("proxy refused the data connection: unknown or expired ticket")
	}
	ut.timer.Stop()
	// Tracked as itself: the proxy's shutdown closes it.
	if !s.track(ut.node) {
		ut.node.Close()
		return nil, net.ErrClosed
	}
	c := &redeemedConn{Conn: ut.node, s: s}
	s.cfg.Metrics.Sessions.Inc()
	if !ut.deadline.IsZero() {
		c.timer = time.AfterFunc(ut.deadline.Sub(s.cfg.Now())+expiryGrace, func() { ut.node.Close() })
	}
	ut.relay.cut = func() { ut.node.Close() }
	c.untrackRelay = s.addRelay(ut.relay)
	return c, nil
}

// redeemedConn is a node connection handed to a server in the proxy's
// process (RedeemLocal); Close releases what a relay would.
type redeemedConn struct {
	net.Conn
	s            *Server
	timer        *time.Timer
	untrackRelay func()
	once         sync.Once
}

func (c *redeemedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.timer != nil {
			c.timer.Stop()
		}
		c.untrackRelay()
		c.s.cfg.Metrics.Sessions.Dec()
		c.s.forget(c.Conn)
	})
	return err
}
