package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
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
