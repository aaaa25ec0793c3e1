package node

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"golang.org/x/crypto/ssh"
)

const (
	dialTimeout          = 10 * time.Second
	forwardDeniedMessage = "port forwarding is not allowed by your roles"
)

// openDirectTCPIP serves "direct-tcpip" (ssh -L, ssh -W): the node dials
// host:port for the client.
func (c *conn) openDirectTCPIP(ctx context.Context, nc ssh.NewChannel) {
	d, err := parseDirectTCPIP(nc.ExtraData())
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	target := net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port)))
	ev := c.event(audit.PortForward)
	ev.Fields = map[string]any{"kind": "local", "addr": target}
	if !c.auth.perms.PortForwarding {
		ev.Success, ev.Error = false, forwardDeniedMessage
		c.srv.emit(ctx, ev)
		_ = nc.Reject(ssh.Prohibited, forwardDeniedMessage)
		return
	}
	c.mu.Lock()
	if c.forwards >= maxForwardChannels {
		c.mu.Unlock()
		_ = nc.Reject(ssh.ResourceShortage, "too many forwarded connections")
		return
	}
	c.forwards++
	c.mu.Unlock()
	c.wg.Go(func() {
		defer func() {
			c.mu.Lock()
			c.forwards--
			c.mu.Unlock()
		}()
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		tc, err := (&net.Dialer{}).DialContext(dctx, "tcp", target)
		cancel()
		if err != nil {
			ev.Success, ev.Error = false, "connect failed"
			c.srv.emit(ctx, ev)
			c.log.Info("direct-tcpip dial failed", slog.String("addr", target), slog.Any("err", err))
			_ = nc.Reject(ssh.ConnectionFailed, "connect to "+target+" failed")
			return
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			tc.Close()
			return
		}
		c.srv.emit(ctx, ev)
		go ssh.DiscardRequests(reqs)
		pipe(ctx, ch, tc)
	})
}

// pipe copies both ways until both directions end or ctx is done.
func pipe(ctx context.Context, ch ssh.Channel, tc net.Conn) {
	stop := context.AfterFunc(ctx, func() {
		ch.Close()
		tc.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { copyClose(tc, ch) })
	wg.Go(func() { copyClose(ch, tc) })
	wg.Wait()
	ch.Close()
	tc.Close()
}

// handleTCPIPForward serves "tcpip-forward" (ssh -R): the node listens and
// forwards accepted connections back over "forwarded-tcpip" channels.
func (c *conn) handleTCPIPForward(ctx context.Context, req *ssh.Request) {
	reply := func(ok bool, payload []byte) {
		if req.WantReply {
			_ = req.Reply(ok, payload)
		}
	}
	f, err := parseTCPIPForward(req.Payload)
	if err != nil {
		reply(false, nil)
		return
	}
	ev := c.event(audit.PortForward)
	ev.Fields = map[string]any{"kind": "remote", "addr": net.JoinHostPort(f.Addr, strconv.Itoa(int(f.Port)))}
	fail := func(reason string) {
		ev.Success, ev.Error = false, reason
		c.srv.emit(ctx, ev)
		reply(false, nil)
	}
	if !c.auth.perms.PortForwarding {
		fail(forwardDeniedMessage)
		return
	}
	if f.Port != 0 && f.Port < 1024 && c.auth.user.UID != 0 {
		fail("privileged port")
		return
	}
	// Like sshd with GatewayPorts=no: listen on loopback only.
	bind := "127.0.0.1"
	if f.Addr == "::1" {
		bind = "::1"
	}
	c.mu.Lock()
	if len(c.remotes) >= maxRemoteForwards {
		c.mu.Unlock()
		fail("too many remote forwards")
		return
	}
	c.mu.Unlock()
	ln, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(int(f.Port))))
	if err != nil {
		c.log.Info("tcpip-forward listen failed", slog.Any("err", err))
		fail("listen failed")
		return
	}
	port := uint32(ln.Addr().(*net.TCPAddr).Port)
	key := forwardKey(f.Addr, port)
	c.mu.Lock()
	if _, dup := c.remotes[key]; dup {
		c.mu.Unlock()
		ln.Close()
		fail("already forwarded")
		return
	}
	c.remotes[key] = ln
	c.mu.Unlock()
	ev.Fields["listen"] = ln.Addr().String()
	c.srv.emit(ctx, ev)
	if f.Port == 0 {
		reply(true, ssh.Marshal(tcpipForwardReply{Port: port}))
	} else {
		reply(true, nil)
	}
	c.wg.Go(func() { c.acceptForwarded(ctx, ln, f.Addr, port) })
}

func forwardKey(addr string, port uint32) string {
	return net.JoinHostPort(addr, strconv.Itoa(int(port)))
}

func (c *conn) acceptForwarded(ctx context.Context, ln net.Listener, addr string, port uint32) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		tc, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.log.Info("forward accept failed", slog.Any("err", err))
			}
			return
		}
		wg.Go(func() {
			oh, op := splitAddr(tc.RemoteAddr())
			opn, _ := strconv.Atoi(op)
			ch, reqs, err := c.sconn.OpenChannel("forwarded-tcpip", ssh.Marshal(forwardedTCPIP{
				Addr: addr, Port: port, OriginAddr: oh, OriginPort: uint32(opn),
			}))
			if err != nil {
				tc.Close()
				return
			}
			go ssh.DiscardRequests(reqs)
			pipe(ctx, ch, tc)
		})
	}
}

func (c *conn) handleCancelTCPIPForward(_ context.Context, req *ssh.Request) {
	f, err := parseTCPIPForward(req.Payload)
	ok := false
	if err == nil {
		c.mu.Lock()
		ln, found := c.remotes[forwardKey(f.Addr, f.Port)]
		if found {
			delete(c.remotes, forwardKey(f.Addr, f.Port))
			ln.Close()
			ok = true
		}
		c.mu.Unlock()
	}
	if req.WantReply {
		_ = req.Reply(ok, nil)
	}
}

func (c *conn) closeRemoteForwards(_ context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, ln := range c.remotes {
		ln.Close()
		delete(c.remotes, k)
	}
}
