package service

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/proxy"
)

// runTunnel keeps one authenticated reverse tunnel to the proxy: the node
// dials out, the proxy opens a channel per user connection, and each channel
// is served by the node's SSH server. Reconnects with jittered exponential
// backoff.
func (a *NodeAgent) runTunnel(ctx context.Context) {
	backoff := 200 * time.Millisecond
	const maxBackoff = 4 * time.Second
	for ctx.Err() == nil {
		start := time.Now()
		err := a.tunnelOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 30*time.Second {
			backoff = 200 * time.Millisecond
		}
		// Full jitter: a fleet reconnecting after a proxy restart spreads out.
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		a.log.Warn("tunnel to proxy lost; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (a *NodeAgent) tunnelOnce(ctx context.Context) error {
	addr := a.proxyAddr()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	a.mu.Lock()
	hostCAs, err := ParseAuthorizedKeys(a.id.HostCAs)
	a.mu.Unlock()
	if err != nil {
		return err
	}
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return containsKey(hostCAs, k) }}
	cfg := &ssh.ClientConfig{
		User:            proxy.TunnelUser,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(a.host)},
		HostKeyCallback: checker.CheckHostKey,
		HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01,
			ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01},
		Timeout: 10 * time.Second,
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	sconn, chans, reqs, err := ssh.NewClientConn(conn, net.JoinHostPort(host, "0"), cfg)
	if err != nil {
		return fmt.Errorf("tunnel handshake with %s: %w", addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	defer sconn.Close()
	go ssh.DiscardRequests(reqs)
	if err := a.sendHeartbeat(sconn); err != nil {
		return err
	}
	a.log.Info("tunnel to proxy up", "proxy", addr)
	a.tunnelUp.Store(true)
	defer a.tunnelUp.Store(false)

	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(a.cfg.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				sconn.Close()
				return
			case <-t.C:
				if err := a.sendHeartbeat(sconn); err != nil {
					sconn.Close()
					return
				}
			}
		}
	}()
	for nc := range chans {
		if nc.ChannelType() != proxy.ChannelNodeConn {
			_ = nc.Reject(ssh.UnknownChannelType, "unknown channel type")
			continue
		}
		var p proxy.NodeConnPayload
		if len(nc.ExtraData()) > 4096 || json.Unmarshal(nc.ExtraData(), &p) != nil {
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
			a.srv.HandleConn(ctx, c)
		}()
	}
	return fmt.Errorf("tunnel closed by %s", addr)
}

func (a *NodeAgent) sendHeartbeat(c ssh.Conn) error {
	payload, err := json.Marshal(proxy.Heartbeat{Labels: a.labels(), Version: api.Version})
	if err != nil {
		return err
	}
	res := make(chan error, 1)
	go func() {
		ok, reply, err := c.SendRequest(proxy.RequestHeartbeat, true, payload)
		if err == nil && !ok {
			err = fmt.Errorf("proxy refused heartbeat: %s", reply)
		}
		res <- err
	}()
	select {
	case err := <-res:
		return err
	case <-time.After(15 * time.Second):
		return fmt.Errorf("heartbeat timed out")
	}
}

func containsKey(keys []ssh.PublicKey, k ssh.PublicKey) bool {
	m := string(k.Marshal())
	for _, c := range keys {
		if string(c.Marshal()) == m {
			return true
		}
	}
	return false
}

// channelConn adapts a tunnel channel to net.Conn for the SSH server.
type channelConn struct {
	ssh.Channel
	local, remote net.Addr
}

func (c *channelConn) LocalAddr() net.Addr                { return c.local }
func (c *channelConn) RemoteAddr() net.Addr               { return c.remote }
func (c *channelConn) SetDeadline(t time.Time) error      { return nil }
func (c *channelConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *channelConn) SetWriteDeadline(t time.Time) error { return nil }

type stringAddr string

func (s stringAddr) Network() string { return "tcp" }
func (s stringAddr) String() string  { return string(s) }

func parseAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return stringAddr(s)
}
