package cli

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/client/sshclient"
	"github.com/warden-sh/warden/internal/policy"
)

func newJoinCmd(g *globals) *cobra.Command {
	var mode, nodeName string
	cmd := &cobra.Command{
		Use:   "join SESSION_ID",
		Short: "Join a live session: watch it (observer) or type into it too (peer)",
		Long: `Join another user's live terminal session. An observer sees the session's
output from the moment it joins; a peer may also type (Ctrl-] leaves). The
session's owner and the audit log see who joined (session.join, session.leave),
and warden sessions ls lists the participants.

Your roles must allow it (allow.join_sessions names the roles whose sessions
you may join, and the modes), and let you see the session's node. A kubectl
exec or attach session (kind kube-exec, kube-attach) is joined through the
proxy, if your roles also let you get its pod; a peer's keys go into the
command's stdin. Find
sessions with warden sessions ls; give --node when you may not list sessions.`,
		Example: "  warden join 3f9c0a1b2c3d4e5f\n  warden join 3f9c0a1b2c3d4e5f --mode peer",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if mode != policy.JoinObserver && mode != policy.JoinPeer {
				return fmt.Errorf("--mode must be %s or %s", policy.JoinObserver, policy.JoinPeer)
			}
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			if nodeName == "" {
				sessions, err := s.api.ListSessions(cmd.Context())
				if err != nil {
					return fmt.Errorf("cannot look up session %s (%s); give its node with --node", id, userMessage(err))
				}
				for _, ls := range sessions {
					if ls.ID != id {
						continue
					}
					if strings.HasPrefix(ls.Kind, "kube-") {
						// It lives at the proxy: joined over HTTPS.
						if !ls.TTY {
							return fmt.Errorf("session %s runs without a terminal (%s); only sessions with one can be joined", id, sessionKind(ls))
						}
						if mode == policy.JoinPeer {
							return s.peerKube(cmd.Context(), id, g.io.In, g.io.Out)
						}
						return s.observeKube(cmd.Context(), id, g.io.Out)
					}
					if !ls.TTY && ls.Kind != "" {
						return fmt.Errorf("session %s runs without a terminal (%s); only sessions with one can be joined", id, sessionKind(ls))
					}
					nodeName = ls.NodeID
				}
				if nodeName == "" {
					return fmt.Errorf("no live session %s (see warden sessions ls)", id)
				}
			}
			// The internal principal as login: a connection that may only
			// join sessions.
			c, err := s.dial(cmd.Context(), ca.InternalPrincipalPrefix+s.p.User, nodeName)
			if err != nil {
				return err
			}
			defer c.Close()
			opt := sshclient.RunOptions{Command: "join " + id + " " + mode, Stdout: g.io.Out, Stderr: g.io.Err}
			if mode == policy.JoinPeer {
				opt.TTY = g.io.stdinIsTerminal()
				opt.Stdin = &escapeReader{r: g.io.In}
			}
			code, err := sshclient.Run(cmd.Context(), c, opt)
			if err != nil && code == 0 {
				return err
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&mode, "mode", policy.JoinObserver, "observer (watch) or peer (watch and type)")
	cmd.Flags().StringVar(&nodeName, "node", "", "the session's node (default: looked up with warden sessions ls)")
	return cmd
}

// escapeReader ends a peer's input at Ctrl-] (the joiner leaves).
type escapeReader struct {
	r    io.Reader
	done bool
}

const ctrlRightBracket = 0x1d

func (e *escapeReader) Read(p []byte) (int, error) {
	if e.done {
		return 0, io.EOF
	}
	n, err := e.r.Read(p)
	if i := bytes.IndexByte(p[:n], ctrlRightBracket); i >= 0 {
		e.done = true
		return i, nil
	}
	return n, err
}
