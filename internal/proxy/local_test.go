package proxy

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/tunnel"
)

// putTicket holds node under a fresh user ticket for remote, as
// serveDialRequest does.
func putTicket(s *Server, remote, user string, node net.Conn) string {
	ticket := tunnel.NewTicket()
	ut := &userTicket{remote: netip.MustParseAddr(remote), node: node,
		relay: newRelay(lock.Subject{User: user}, remote+":1", nil)}
	ut.timer = time.AfterFunc(userTicketTTL, func() {})
	s.data.mu.Lock()
	s.data.users[ticket] = ut
	s.data.mu.Unlock()
	return ticket
}

func relayCount(s *Server) int {
	s.relays.mu.Lock()
	defer s.relays.mu.Unlock()
	return len(s.relays.m)
}

// TestRedeemLocal: the web terminal's in-process redemption keeps a data
// ticket's rules (the address it was issued to, one use) and holds the
// node's connection as a relay (lock checks, the proxy's shutdown).
func TestRedeemLocal(t *testing.T) {
	e := newProxyEnv(t)
	s := e.s
	node, far := net.Pipe()
	defer far.Close()
	ticket := putTicket(s, "10.1.2.3", "carol", node)

	if _, err := s.RedeemLocal("10.9.9.9:4000", ticket); err == nil {
		t.Fatal("a ticket was redeemed for another address")
	}
	if _, err := s.RedeemLocal("10.1.2.3:4000", tunnel.NewTicket()); err == nil {
		t.Fatal("a made-up ticket was redeemed")
	}
	c, err := s.RedeemLocal("10.1.2.3:4000", ticket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemLocal("10.1.2.3:4000", ticket); err == nil {
		t.Fatal("a ticket was redeemed twice")
	}
	if n := relayCount(s); n != 1 {
		t.Fatalf("relays tracked: %d, want 1", n)
	}
	// The node's bytes reach the reader directly.
	go far.Write([]byte("SSH-2.0-node\r\n"))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "SSH-2.0-node\r\n" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	c.Close()
	if n := relayCount(s); n != 0 {
		t.Fatalf("relays tracked after Close: %d, want 0", n)
	}
	if _, err := far.Read(buf); err == nil {
		t.Fatal("the node's connection is still open after Close")
	}

	// A lock that arrived before the redemption cuts the connection at once.
	node2, far2 := net.Pipe()
	defer far2.Close()
	ticket2 := putTicket(s, "10.1.2.3", "dave", node2)
	if _, err := e.a.CreateLock(context.Background(), auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "dave"}, Message: "stop"}); err != nil {
		t.Fatal(err)
	}
	c2, err := s.RedeemLocal("10.1.2.3:4000", ticket2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Read(buf); err == nil {
		t.Fatalf("a locked user's connection was not cut: %v", err)
	}
	c2.Close()

	// The proxy's shutdown closes a redeemed connection.
	node3, far3 := net.Pipe()
	defer far3.Close()
	c3, err := s.RedeemLocal("10.1.2.3:4000", putTicket(s, "10.1.2.3", "carol", node3))
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	s.Close()
	if _, err := c3.Read(buf); err == nil {
		t.Fatal("the proxy's shutdown left a redeemed connection open")
	}
}
