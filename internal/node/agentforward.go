package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
)

// agentForward is a forwarded SSH agent: a Unix socket on the node, owned by
// the session's user, whose connections are relayed to the client over
// "auth-agent@openssh.com" channels.
type agentForward struct {
	dir  string
	sock string
	ln   net.Listener
}

// startAgentForward creates the socket and relays connections until ctx
// ends; wg tracks the relay goroutines.
func (s *session) startAgentForward(ctx context.Context, wg *sync.WaitGroup) (*agentForward, error) {
	u := s.c.auth.user
	dir, err := os.MkdirTemp("", "warden-agent-")
	if err != nil {
		return nil, fmt.Errorf("agent dir: %w", err)
	}
	af := &agentForward{dir: dir, sock: filepath.Join(dir, "agent.sock")}
	fail := func(err error) (*agentForward, error) {
		if af.ln != nil {
			af.ln.Close()
		}
		os.RemoveAll(dir)
		return nil, err
	}
	if s.c.srv.uid == 0 {
		if err := os.Chown(dir, int(u.UID), int(u.GID)); err != nil {
			return fail(fmt.Errorf("chown agent dir: %w", err))
		}
	}
	ln, err := net.Listen("unix", af.sock)
	if err != nil {
		return fail(fmt.Errorf("agent socket: %w", err))
	}
	af.ln = ln
	if s.c.srv.uid == 0 {
		if err := os.Chown(af.sock, int(u.UID), int(u.GID)); err != nil {
			return fail(fmt.Errorf("chown agent socket: %w", err))
		}
	}
	wg.Go(func() {
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		defer stop()
		defer os.RemoveAll(dir)
		var relays sync.WaitGroup
		defer relays.Wait()
		for {
			uc, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					s.log().Info("agent accept failed", slog.Any("err", err))
				}
				return
			}
			relays.Go(func() {
				ch, reqs, err := s.c.sconn.OpenChannel("auth-agent@openssh.com", nil)
				if err != nil {
					uc.Close()
					return
				}
				go ssh.DiscardRequests(reqs)
				pipe(ctx, ch, uc)
			})
		}
	})
	return af, nil
}
