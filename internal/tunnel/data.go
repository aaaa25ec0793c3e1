package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
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

	// DataKindNode and DataKindUser tell which end opened a data connection.
	DataKindNode = 'n'
	DataKindUser = 'u'
	// TicketBytes is the size of a ticket (hex-encoded on the wire).
	TicketBytes = 32
	// PreambleLen is the fixed size of a data connection's preamble.
	PreambleLen = len(DataMagic) + 1 + 2*TicketBytes + 1

	// DialBackTimeout bounds how long the proxy waits for a node's data
	// connection before it falls back to the tunnel.
	DialBackTimeout = 3 * time.Second
	// DataStatusOK is the byte the proxy answers a redeemed user ticket with.
	DataStatusOK = 0
)

// DialBackPayload is the payload of RequestDialBack.
type DialBackPayload struct {
	Ticket     string
	ClientAddr string
	User       string
}

// DialReply is the reply payload of RequestDial.
type DialReply struct {
	Ticket string
}

// NewTicket returns a fresh random ticket.
func NewTicket() string {
	b := make([]byte, TicketBytes)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Preamble renders the first bytes of a data connection.
func Preamble(kind byte, ticket string) []byte {
	b := make([]byte, 0, PreambleLen)
	b = append(b, DataMagic...)
	b = append(b, kind)
	b = append(b, ticket...)
	return append(b, '\n')
}

// ParsePreamble validates the fixed-size preamble of a data connection.
func ParsePreamble(b []byte) (kind byte, ticket string, err error) {
	if len(b) != PreambleLen || string(b[:len(DataMagic)]) != DataMagic || b[len(b)-1] != '\n' {
		return 0, "", errors.New("malformed data preamble")
	}
	kind = b[len(DataMagic)]
	if kind != DataKindNode && kind != DataKindUser {
		return 0, "", errors.New("unknown data connection kind")
	}
	ticket = string(b[len(DataMagic)+1 : len(b)-1])
	if raw, err := hex.DecodeString(ticket); err != nil || hex.EncodeToString(raw) != ticket {
		return 0, "", errors.New("malformed ticket")
	}
	return kind, ticket, nil
}

// DialData asks the proxy, over the user's SSH connection pc, for a data
// connection to target and returns it, ready to carry an SSH session.
// proxyAddr is the proxy's address. errors.Is(err, ErrNoDataConns) tells
// a proxy that does not offer them.
func DialData(ctx context.Context, pc ssh.Conn, proxyAddr, target string) (net.Conn, error) {
	return DialDataVia(ctx, pc, target, func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		return d.DialContext(ctx, "tcp", proxyAddr)
	})
}

// DialDataVia is DialData with the data connection opened by dial (the
// web terminal's, in the proxy's own process).
func DialDataVia(ctx context.Context, pc ssh.Conn, target string, dial func(context.Context) (net.Conn, error)) (net.Conn, error) {
	r, err := requestDial(pc, target)
	if err != nil {
		return nil, err
	}
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(Preamble(DataKindUser, r.Ticket)); err != nil {
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
	if status[0] != DataStatusOK {
		msg := make([]byte, 256)
		n, _ := c.Read(msg)
		c.Close()
		return nil, fmt.Errorf("proxy refused the data connection: %s", strings.TrimSpace(string(msg[:n])))
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// DialDataRedeem is DialData for a client in the proxy's own process (the
// web terminal): redeem takes the ticket the proxy answered and returns
// the node's connection (proxy.Server.RedeemLocal), without a data
// connection to the proxy's port.
func DialDataRedeem(pc ssh.Conn, target string, redeem func(ticket string) (net.Conn, error)) (net.Conn, error) {
	r, err := requestDial(pc, target)
	if err != nil {
		return nil, err
	}
	return redeem(r.Ticket)
}

// requestDial asks the proxy, over pc, for a ticket for a data connection
// to target.
func requestDial(pc ssh.Conn, target string) (DialReply, error) {
	ok, reply, err := pc.SendRequest(RequestDial, true, ssh.Marshal(struct{ Host string }{target}))
	if err != nil {
		return DialReply{}, err
	}
	if !ok {
		if len(reply) == 0 {
			return DialReply{}, ErrNoDataConns
		}
		return DialReply{}, &DialError{Msg: string(reply)}
	}
	var r DialReply
	if err := ssh.Unmarshal(reply, &r); err != nil {
		return DialReply{}, fmt.Errorf("proxy dial reply: %w", err)
	}
	return r, nil
}

// ErrNoDataConns is returned by DialData when the proxy does not offer data
// connections; use a direct-tcpip channel instead.
var ErrNoDataConns = errors.New("the proxy does not offer data connections")

// DialError is the proxy's refusal to connect a node (access, lock,
// unknown target), meant for the user.
type DialError struct{ Msg string }

func (e *DialError) Error() string { return e.Msg }
