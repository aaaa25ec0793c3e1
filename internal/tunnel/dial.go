package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/ca"
)

// Config configures the agent side of a reverse tunnel.
type Config struct {
	// Addr is the proxy address.
	Addr string
	// Signer is the node's host certificate signer; it authenticates the
	// tunnel.
	Signer ssh.Signer
	// HostCAs verify the proxy's host certificate.
	HostCAs func() []ssh.PublicKey
	// Heartbeat returns what to report (labels, version).
	Heartbeat func() Heartbeat
	// HeartbeatInterval defaults to 10s.
	HeartbeatInterval time.Duration
	// Handle serves one user connection relayed by the proxy; it must
	// return when ctx ends and close c.
	Handle func(ctx context.Context, c net.Conn)
	// OnState is told when the tunnel goes up or down (optional).
	OnState func(up bool)
	Logger  *slog.Logger
	// MaxBackoff caps the reconnect delay (default 4s, so a restarted
	// proxy sees its nodes back within seconds).
	MaxBackoff time.Duration
	// ChannelType is the kind of channel the agent serves (default
	// ChannelNodeConn; a kube agent serves ChannelKubeConn).
	ChannelType string
	// NoDialBack refuses the proxy's requests for data connections, so
	// every session is carried on the tunnel itself (slower: the bytes are
	// encrypted twice). For networks where the node may open only one
	// connection to the proxy.
	NoDialBack bool
}

// DialAndServe keeps one authenticated reverse tunnel to the proxy until ctx
// ends, reconnecting with jittered exponential backoff.
func DialAndServe(ctx context.Context, cfg Config) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.ChannelType == "" {
		cfg.ChannelType = ChannelNodeConn
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 4 * time.Second
	}
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := dialOnce(ctx, cfg)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 30*time.Second {
			backoff = 200 * time.Millisecond
		}
		// Jitter spreads a fleet reconnecting after a proxy restart.
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		cfg.Logger.Warn("tunnel to proxy lost; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, cfg.MaxBackoff)
	}
}

func dialOnce(ctx context.Context, cfg Config) error {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	hostCAs := cfg.HostCAs()
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return containsKey(hostCAs, k) }}
	ccfg := &ssh.ClientConfig{
		User:              User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback:   checker.CheckHostKey,
		HostKeyAlgorithms: ca.HostCertAlgorithms,
		Timeout:           10 * time.Second,
	}
	ca.ClientConfig(ccfg)
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	// Read in large pieces: one read takes what has arrived, often several
	// packets, where the SSH library's own 4 KiB buffer took two reads for
	// each large packet.
	bc := NewBufferedConn(conn)
	bc.Buffer()
	sconn, chans, reqs, err := ssh.NewClientConn(bc, net.JoinHostPort(host, "0"), ccfg)
	if err != nil {
		return fmt.Errorf("tunnel handshake with %s: %w", cfg.Addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	defer sconn.Close()
	if err := sendHeartbeat(sconn, cfg.Heartbeat()); err != nil {
		return err
	}
	cfg.Logger.Info("tunnel to proxy up", "proxy", cfg.Addr)
	if cfg.OnState != nil {
		cfg.OnState(true)
		defer cfg.OnState(false)
	}
	connCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for req := range reqs {
			if req.Type != RequestDialBack || cfg.NoDialBack {
				_ = req.Reply(false, nil)
				continue
			}
			var p DialBackPayload
			if len(req.Payload) > 4096 || json.Unmarshal(req.Payload, &p) != nil || len(p.Ticket) != 2*TicketBytes {
				_ = req.Reply(false, []byte("bad payload"))
				continue
			}
			_ = req.Reply(true, nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				dialBack(connCtx, cfg, p)
			}()
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-connCtx.Done():
				sconn.Close()
				return
			case <-t.C:
				if err := sendHeartbeat(sconn, cfg.Heartbeat()); err != nil {
					sconn.Close()
					return
				}
			}
		}
	}()
	for nc := range chans {
		if nc.ChannelType() != cfg.ChannelType {
			_ = nc.Reject(ssh.UnknownChannelType, "unknown channel type")
			continue
		}
		var p NodeConnPayload
		if cfg.ChannelType == ChannelNodeConn && (len(nc.ExtraData()) > 4096 || json.Unmarshal(nc.ExtraData(), &p) != nil) {
			_ = nc.Reject(ssh.ConnectionFailed, "bad payload")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go ssh.DiscardRequests(chReqs)
		c := &channelConn{Channel: ch, local: conn.LocalAddr(), remote: parseAddr(p.ClientAddr)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg.Handle(connCtx, c)
		}()
	}
	return errors.New("tunnel closed by the proxy")
}

// dialBack opens a data connection to the proxy for one user connection
// and serves it. The proxy already authenticated the user; the node's SSH
// server authenticates them again, end to end.
func dialBack(ctx context.Context, cfg Config, p DialBackPayload) {
	d := net.Dialer{Timeout: DialBackTimeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		cfg.Logger.Warn("cannot open a data connection to the proxy", "err", err)
		return
	}
	if _, err := c.Write(Preamble(DataKindNode, p.Ticket)); err != nil {
		c.Close()
		return
	}
	cfg.Handle(ctx, &dataConn{Conn: c, remote: parseAddr(p.ClientAddr)})
}

// dataConn is a node's data connection; its remote address is the user's,
// as the proxy reported it.
type dataConn struct {
	net.Conn
	remote net.Addr
}

func (c *dataConn) RemoteAddr() net.Addr { return c.remote }

func sendHeartbeat(c ssh.Conn, hb Heartbeat) error {
	payload, err := json.Marshal(hb)
	if err != nil {
		return err
	}
	res := make(chan error, 1)
	go func() {
		ok, reply, err := c.SendRequest(RequestHeartbeat, true, payload)
		if err == nil && !ok {
			err = fmt.Errorf("proxy refused heartbeat: %s", reply)
		}
		res <- err
	}()
	select {
	case err := <-res:
		return err
	case <-time.After(15 * time.Second):
		c.Close()
		return errors.New("heartbeat timed out")
	}
}

// ChannelConn adapts a channel on a tunnel to net.Conn (both ends use it).
func ChannelConn(ch ssh.Channel, local, remote net.Addr) net.Conn {
	return &channelConn{Channel: ch, local: local, remote: remote}
}

// channelConn adapts a tunnel channel to net.Conn for the node's SSH server.
// Deadlines are not supported on channels; the proxy bounds its side.
type channelConn struct {
	ssh.Channel
	local, remote net.Addr
}

func (c *channelConn) LocalAddr() net.Addr              { return c.local }
func (c *channelConn) RemoteAddr() net.Addr             { return c.remote }
func (c *channelConn) SetDeadline(time.Time) error      { return nil }
func (c *channelConn) SetReadDeadline(time.Time) error  { return nil }
func (c *channelConn) SetWriteDeadline(time.Time) error { return nil }

type stringAddr string

func (s stringAddr) Network() string { return "tcp" }
func (s stringAddr) String() string  { return string(s) }

func parseAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return stringAddr(s)
}

func containsKey(keys []ssh.PublicKey, k ssh.PublicKey) bool {
	m := k.Marshal()
	for _, c := range keys {
		if string(c.Marshal()) == string(m) {
			return true
		}
	}
	return false
}
