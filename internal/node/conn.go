package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"golang.org/x/crypto/ssh"
)

// conn is one authenticated SSH connection.
type conn struct {
	srv    *Server
	sconn  *ssh.ServerConn
	auth   *authInfo
	remote string             // the client's address, for events and ConnInfo
	cancel context.CancelFunc // ends the connection
	log    *slog.Logger       // with the connection's user, login and address

	wg sync.WaitGroup // channel and forwarding goroutines

	mu       sync.Mutex
	sessions map[*session]struct{}
	forwards int                     // open direct-tcpip channels
	remotes  map[string]net.Listener // tcpip-forward listeners by "addr:port"
	expired  bool
	// endReason says why the node ended the connection (audited in
	// session.end): "certificate expired", "locked", "idle timeout", ...
	endReason string
	// revoked: ended because access was revoked (Server.Terminate).
	revoked bool
	started time.Time
	// lastActivity is the unix-nano time data last moved on a session.
	lastActivity atomic.Int64
}

// touch records activity for the idle timeout.
func (c *conn) touch() { c.lastActivity.Store(time.Now().UnixNano()) }

func (c *conn) close() { c.cancel() }

// event returns an audit event with the connection's identity filled in.
func (c *conn) event(name string) audit.Event {
	return audit.Event{
		Event:      name,
		User:       c.auth.perms.User,
		Login:      c.auth.login,
		RemoteAddr: c.remote,
		Success:    true,
	}
}

func (c *conn) serve(ctx context.Context, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	defer c.sconn.Close()
	if !c.auth.expires.IsZero() {
		d := c.auth.expires.Sub(c.srv.cfg.Now())
		t := time.AfterFunc(max(d, 0), c.expire)
		defer t.Stop()
	}
	c.touch()
	if idle := c.auth.perms.IdleTimeout; idle > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.watchIdle(ctx, idle)
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.handleGlobalRequests(ctx, reqs)
	}()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			c.openSession(ctx, nc)
		case "direct-tcpip":
			if c.auth.perms.JoinOnly {
				_ = nc.Reject(ssh.Prohibited, "this connection may only join sessions")
				continue
			}
			c.openDirectTCPIP(ctx, nc)
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
	// The connection is gone: stop everything that belongs to it.
	c.cancel()
	c.closeRemoteForwards(ctx)
	c.wg.Wait()
}

func (c *conn) openSession(ctx context.Context, nc ssh.NewChannel) {
	c.mu.Lock()
	if len(c.sessions) >= c.srv.cfg.MaxSessionsPerConn {
		c.mu.Unlock()
		_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("too many sessions on this connection (max %d)", c.srv.cfg.MaxSessionsPerConn))
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		c.mu.Unlock()
		return
	}
	s := newSession(c, ch)
	c.sessions[s] = struct{}{}
	c.mu.Unlock()
	c.srv.sessions.Add(1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.srv.sessions.Add(-1)
		defer func() {
			c.mu.Lock()
			delete(c.sessions, s)
			c.mu.Unlock()
		}()
		s.serve(ctx, reqs)
	}()
}

// expire ends the connection because the certificate (or the authorization)
// expired, telling every session why.
func (c *conn) expire() {
	c.terminate("certificate expired", "your certificate expired; closing the connection", false)
}

// watchIdle ends the connection after idle time without session data.
func (c *conn) watchIdle(ctx context.Context, idle time.Duration) {
	t := time.NewTicker(min(idle/4+time.Millisecond, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, c.lastActivity.Load())) > idle {
				c.terminate("idle timeout", fmt.Sprintf("the connection was idle for more than %s; closing it", idle), false)
				return
			}
		}
	}
}

// terminate ends the connection, telling every session why; reason goes to
// the session.end audit events.
func (c *conn) terminate(reason, message string, revoke bool) {
	c.mu.Lock()
	if c.endReason != "" {
		c.mu.Unlock()
		return
	}
	c.expired = true
	c.endReason = reason
	c.revoked = revoke
	sessions := make([]*session, 0, len(c.sessions))
	for s := range c.sessions {
		sessions = append(sessions, s)
	}
	c.mu.Unlock()
	if revoke {
		// The sessions' processes stop behind the work already under way:
		// this cut and any others the node is making (behindQueue). Queued
		// now, so that a client slow to take the message cannot delay it.
		for _, s := range sessions {
			revokedFreezes.add(s.freeze)
		}
	}
	c.log.Info("ending connection", slog.String("reason", reason))
	// A client that stopped reading must not hold the close up: after a
	// second the connection goes, message or not.
	t := time.AfterFunc(time.Second, func() { c.sconn.Close() })
	if len(sessions) == 1 {
		sessions[0].notify(message) // the common case, without goroutines
	} else {
		var wg sync.WaitGroup
		for _, s := range sessions {
			wg.Go(func() { s.notify(message) })
		}
		wg.Wait()
	}
	t.Stop()
	c.sconn.Close()
	c.cancel()
}

func (c *conn) isExpired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expired
}

// isRevoked reports whether the connection was ended because its access
// was revoked (Server.Terminate): its sessions lose every process.
func (c *conn) isRevoked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.revoked
}

func (c *conn) reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endReason
}

func (c *conn) handleGlobalRequests(ctx context.Context, reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch {
		case c.auth.perms.JoinOnly && req.WantReply:
			_ = req.Reply(false, nil)
		case c.auth.perms.JoinOnly:
		case req.Type == "tcpip-forward":
			c.handleTCPIPForward(ctx, req)
		case req.Type == "cancel-tcpip-forward":
			c.handleCancelTCPIPForward(ctx, req)
		default:
			// keepalive@openssh.com, no-more-sessions@openssh.com,
			// hostkeys-prove-00@openssh.com ...: not supported.
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}
}
