package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/client/sshclient"
	"github.com/warden-sh/warden/internal/target"
	"github.com/warden-sh/warden/internal/tunnel"
	"github.com/warden-sh/warden/internal/wire"
)

// session is the logged-in user's view of the cluster for one command.
type session struct {
	p   *client.Profile
	api *api.Client
	// g and mfa answer a per-session MFA check (sessionmfa.go); signer,
	// once set, is the per-session certificate's.
	g      *globals
	mfa    *sessionMFAOptions
	signer ssh.Signer
}

// keySigner is the signer connections use: the per-session certificate's
// once a check made one, else the profile's.
func (s *session) keySigner() (ssh.Signer, error) {
	if s.signer != nil {
		return s.signer, nil
	}
	signer, _, err := s.p.Signer()
	return signer, err
}

func (g *globals) session() (*session, error) {
	p, err := g.profile()
	if err != nil {
		return nil, err
	}
	if err := p.CheckValid(time.Now()); err != nil {
		return nil, err
	}
	c, err := p.APIClient()
	if err != nil {
		return nil, err
	}
	return &session{p: p, api: c, g: g}, nil
}

func (s *session) close() { s.api.Close() }

// resolveNode finds the one node the user means by name, id or label
// (target.ParseHost).
func (s *session) resolveNode(ctx context.Context, name string) (*wire.Node, error) {
	tg, err := target.ParseHost(name)
	if err != nil {
		return nil, err
	}
	nodes, err := s.api.ListNodes(ctx, nil)
	if err != nil {
		return nil, err
	}
	byName := tg.Match(nodes)
	switch len(byName) {
	case 1:
		return &byName[0], nil
	case 0:
		names := make([]string, 0, len(nodes))
		for _, n := range nodes {
			names = append(names, n.Name)
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("node %q not found: you have access to no node right now (warden ls)", name)
		}
		return nil, fmt.Errorf("node %q not found among the nodes you can access: %s", name, strings.Join(names, ", "))
	default:
		ids := make([]string, 0, len(byName))
		for _, n := range byName {
			ids = append(ids, n.ID)
		}
		return nil, fmt.Errorf("%d nodes are called %q; use one of their ids: %s", len(byName), name, strings.Join(ids, ", "))
	}
}

// proxyClient opens an SSH connection to the proxy (the jump host) with
// the user's certificate; the proxy's host certificate is checked against
// the cluster host CA.
func (s *session) proxyClient(ctx context.Context) (*ssh.Client, error) {
	signer, err := s.keySigner()
	if err != nil {
		return nil, err
	}
	cas, err := s.p.HostCAs()
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(s.p.Proxy)
	if err != nil {
		return nil, fmt.Errorf("profile proxy address %q: %w", s.p.Proxy, err)
	}
	return sshclient.Dial(ctx, sshclient.Config{User: s.p.User, Addr: s.p.Proxy, Signer: signer, HostCAs: cas,
		HostName: host, Timeout: 15 * time.Second})
}

// dial connects to a node as login, through the proxy. The SSH session is
// end to end between this client and the node: the proxy relays bytes it
// cannot read.
func (s *session) dial(ctx context.Context, login, nodeName string) (*ssh.Client, error) {
	n, err := s.resolveNode(ctx, nodeName)
	if err != nil {
		return nil, err
	}
	c, err := s.dialOnce(ctx, login, n)
	// Connect first: only when the proxy refuses for want of a per-session
	// MFA check does the check happen, and the connection is made once
	// more with its certificate.
	if err != nil && s.signer == nil && tunnel.HasCode(err, tunnel.CodeSessionMFA) && !strings.HasPrefix(login, ca.InternalPrincipalPrefix) {
		signer, _, merr := s.g.sessionMFASigner(ctx, s, s.mfa, []string{n.ID}, strconv.Quote(n.Name), login, true)
		if merr != nil {
			return nil, merr
		}
		s.signer = signer
		c, err = s.dialOnce(ctx, login, n)
	}
	return c, err
}

// dialOnce connects to node n as login through the proxy, with the
// session's signer.
func (s *session) dialOnce(ctx context.Context, login string, n *wire.Node) (*ssh.Client, error) {
	pc, err := s.proxyClient(ctx)
	if err != nil {
		return nil, err
	}
	signer, err := s.keySigner()
	if err != nil {
		pc.Close()
		return nil, err
	}
	cas, err := s.p.HostCAs()
	if err != nil {
		pc.Close()
		return nil, err
	}
	viaChannel := false
	c, err := sshclient.Dial(ctx, sshclient.Config{User: login, Addr: net.JoinHostPort(n.ID, "0"), Signer: signer, HostCAs: cas,
		HostName: n.ID, Timeout: 15 * time.Second,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := s.dialNode(ctx, pc, n.ID)
			if err != nil {
				return nil, fmt.Errorf("through the proxy: %w", err)
			}
			_, viaChannel = conn.(ssh.Channel)
			return conn, nil
		}})
	if err != nil {
		pc.Close()
		return nil, nodeError{err: err, id: n.ID, name: n.Name}
	}
	if !viaChannel {
		// A data connection does not need the SSH connection to the proxy.
		pc.Close()
		return c, nil
	}
	go func() {
		_ = c.Wait()
		pc.Close()
	}()
	return c, nil
}

// dialNode opens a connection to a node's SSH server through the proxy:
// a data connection the proxy splices in the kernel when it offers them,
// else a direct-tcpip channel on pc.
func (s *session) dialNode(ctx context.Context, pc *ssh.Client, host string) (net.Conn, error) {
	conn, err := tunnel.DialData(ctx, pc, s.p.Proxy, host)
	if errors.Is(err, tunnel.ErrNoDataConns) {
		return pc.Dial("tcp", net.JoinHostPort(host, "0"))
	}
	return conn, err
}

// nodeError names the node by its name rather than its id in messages,
// keeping the error chain for errors.Is.
type nodeError struct {
	err      error
	id, name string
}

func (e nodeError) Error() string {
	return strings.ReplaceAll(e.err.Error(), e.id, "node "+strconv.Quote(e.name))
}
func (e nodeError) Unwrap() error { return e.err }

// withSuggestion adds, to a denial, the roles the user could request.
func (s *session) withSuggestion(ctx context.Context, err error, login, node string) error {
	if !errors.Is(err, sshclient.ErrPermissionDenied) && !strings.Contains(err.Error(), "not found") {
		return err
	}
	roles, serr := s.api.SuggestRoles(ctx, login, node)
	if serr != nil || len(roles) == 0 {
		return err
	}
	return fmt.Errorf("%v\nYou may request access: warden request create --roles %s --reason \"...\"", err, strings.Join(roles, ","))
}

func (s *session) defaultLogin() (string, error) {
	if len(s.p.Logins) == 1 {
		return s.p.Logins[0], nil
	}
	if len(s.p.Logins) == 0 {
		return "", fmt.Errorf("your roles allow no OS login")
	}
	return "", fmt.Errorf("say which login to use (LOGIN@NODE); yours are: %s", strings.Join(s.p.Logins, ", "))
}

func newLsCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls [LABEL=VALUE ...]",
		Short:   "List the nodes you can access",
		Example: "  warden ls\n  warden ls env=prod\n  warden ls -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			filter, err := parseLabels(strings.Join(args, ","))
			if err != nil {
				return err
			}
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			if format == "json" {
				// Printed as received: no decoding and encoding again of
				// what may be thousands of nodes.
				raw, err := s.api.ListNodesJSON(cmd.Context(), filter)
				if err != nil {
					return err
				}
				_, err = printAs(g.io.Out, format, raw)
				return err
			}
			nodes, err := s.api.ListNodes(cmd.Context(), filter)
			if err != nil {
				return err
			}
			if nodes == nil {
				nodes = []wire.Node{}
			}
			return render(g, format, nodes, "NODE\tID\tLABELS\tVERSION\tCONNECTED", func(n wire.Node) []string {
				return []string{n.Name, n.ID, formatLabels(n.Labels), n.Version, humanSince(n.Since)}
			})
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

func formatLabels(m map[string]string) string { return joinKV(m, ",") }

// joinKV renders a map as sorted key=value pairs.
func joinKV[V any](m map[string]V, sep string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return strings.Join(parts, sep)
}

func newSSHCmd(g *globals) *cobra.Command {
	var forceTTY, noTTY, noCommand bool
	var login string
	var forwardSpecs []string
	var mfa sessionMFAOptions
	cmd := &cobra.Command{
		Use:   "ssh [-t] [-L [BIND:]PORT:HOST:HOSTPORT] [-N] [LOGIN@]NODE [COMMAND...]",
		Short: "Open a shell or run a command on a node",
		Long: `Open an interactive shell on a node, or run a command there. The exit status of
the remote command becomes warden's own. NODE is a node name or id (warden ls).

-L forwards a local port through the node to HOST:HOSTPORT as the node sees it
(your roles must allow port forwarding); with -N no command runs and warden
forwards until interrupted.

Where your roles require an MFA check for each session (require_session_mfa),
warden asks for a code from your authenticator first (or takes it from
--mfa-code-file or WARDEN_MFA_CODE, or checks a passkey in your browser with
--mfa-passkey) and connects with a certificate for this one session.`,
		Example: "  warden ssh dev@web1\n  warden ssh dev@web1 uptime\n  warden ssh -t dev@web1 top\n" +
			"  warden ssh -N -L 5432:localhost:5432 dev@db1   # then: psql -h 127.0.0.1",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmdLine := strings.Join(args[1:], " ")
			tg, err := target.Parse(args[0])
			if err != nil {
				return err
			}
			l, host := tg.Login, tg.String()
			switch {
			case noCommand && len(forwardSpecs) == 0:
				return errors.New("-N runs no command: give at least one -L to forward")
			case noCommand && cmdLine != "":
				return errors.New("-N runs no command: drop the command or -N")
			}
			// Listen first: a port in use fails before any connection.
			forwards, err := listenForwards(forwardSpecs)
			if err != nil {
				return err
			}
			defer forwards.close()
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			s.mfa = &mfa
			if l == "" {
				l = login
			}
			if l == "" {
				if l, err = s.defaultLogin(); err != nil {
					return err
				}
			}
			c, err := s.dial(cmd.Context(), l, host)
			if err != nil {
				return s.withSuggestion(cmd.Context(), err, l, host)
			}
			defer c.Close()
			forwards.serve(c, g.io.Err)
			if noCommand {
				return forwards.wait(cmd.Context(), c, host, g.io.Err)
			}
			tty := (cmdLine == "" && g.io.stdinIsTerminal()) || forceTTY
			if noTTY {
				tty = false
			}
			code, err := sshclient.Run(cmd.Context(), c, sshclient.RunOptions{Command: cmdLine, TTY: tty,
				Stdin: g.io.In, Stdout: g.io.Out, Stderr: g.io.Err})
			if err != nil && code == 0 {
				return err
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&forceTTY, "tty", "t", false, "force a pseudo-terminal")
	cmd.Flags().BoolVarP(&noTTY, "no-tty", "T", false, "never allocate a pseudo-terminal")
	cmd.Flags().StringVarP(&login, "login", "l", "", "OS login (alternative to LOGIN@NODE)")
	cmd.Flags().StringArrayVarP(&forwardSpecs, "local-forward", "L", nil,
		"forward [BIND_ADDRESS:]PORT (default bind 127.0.0.1) to HOST:HOSTPORT through the node (repeatable)")
	cmd.Flags().BoolVarP(&noCommand, "no-command", "N", false, "run no command, only forward ports (with -L)")
	addSessionMFAFlags(cmd, &mfa)
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// localForwards are `warden ssh -L` forwards, listening.
type localForwards []localForward

type localForward struct {
	sshclient.Forward
	ln net.Listener
}

// listenForwards parses -L specs and listens on each forward's address.
func listenForwards(specs []string) (localForwards, error) {
	var l localForwards
	for _, spec := range specs {
		f, err := sshclient.ParseLocalForward(spec)
		if err != nil {
			l.close()
			return nil, err
		}
		ln, err := net.Listen("tcp", f.Listen)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("forward: %w", err)
		}
		l = append(l, localForward{Forward: f, ln: ln})
	}
	return l, nil
}

// serve carries each forward's connections through c.
func (l localForwards) serve(c *ssh.Client, errOut io.Writer) {
	for _, f := range l {
		go sshclient.ServeLocalForward(c, f.ln, f.Target, errOut)
	}
}

// wait (ssh -N) forwards until ctx ends (nil) or the connection to host
// does (an error: a lock, the node going away).
func (l localForwards) wait(ctx context.Context, c *ssh.Client, host string, errOut io.Writer) error {
	for _, f := range l {
		textf(errOut, "forwarding %s -> %s on %s (interrupt to stop)\n", f.ln.Addr(), f.Target, host)
	}
	ended := make(chan error, 1)
	go func() { ended <- c.Wait() }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-ended:
		return fmt.Errorf("the connection to %s ended: %v", host, err)
	}
}

func (l localForwards) close() {
	for _, f := range l {
		f.ln.Close()
	}
}

func newSCPCmd(g *globals) *cobra.Command {
	var recursive, quiet bool
	var mfa sessionMFAOptions
	cmd := &cobra.Command{
		Use:   "scp [-r] SOURCE... DEST",
		Short: "Copy files to or from a node (over SFTP)",
		Long: `Copy files to or from a node over SFTP. A remote path is [LOGIN@]NODE:PATH,
where NODE is a node name or id, or a label KEY=VALUE that names one node
(as in warden ssh).`,
		Example: "  warden scp ./app.tar.gz dev@web1:/tmp/\n" +
			"  warden scp -r dev@web1:/var/log/app ./logs\n" +
			"  warden scp ./app.tar.gz dev@env=prod:/tmp/",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcs, dst := args[:len(args)-1], args[len(args)-1]
			dTarget, dPath, dRemote, err := sshclient.ParseCopyArg(dst)
			if err != nil {
				return err
			}
			dLogin, dHost := dTarget.Login, dTarget.String()
			var login, host string
			var paths []string
			for _, a := range srcs {
				tg, p, remote, err := sshclient.ParseCopyArg(a)
				if err != nil {
					return err
				}
				l, h := tg.Login, tg.String()
				if remote == dRemote {
					return fmt.Errorf("copy between two local or two remote paths is not supported: %s -> %s", a, dst)
				}
				if remote {
					if host != "" && (h != host || l != login) {
						return fmt.Errorf("all remote sources must be on the same node")
					}
					login, host = l, h
				}
				paths = append(paths, p)
			}
			if dRemote {
				login, host = dLogin, dHost
			}
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			s.mfa = &mfa
			if login == "" {
				if login, err = s.defaultLogin(); err != nil {
					return err
				}
			}
			c, err := s.dial(cmd.Context(), login, host)
			if err != nil {
				return err
			}
			defer c.Close()
			opt := sshclient.CopyOptions{Recursive: recursive, Quiet: quiet}
			if !quiet {
				opt.Progress = g.io.Err
			}
			if dRemote {
				return sshclient.Upload(cmd.Context(), c, paths, dPath, opt)
			}
			return sshclient.Download(cmd.Context(), c, paths, dPath, opt)
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "copy directories recursively")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress output")
	addSessionMFAFlags(cmd, &mfa)
	return cmd
}

func humanSince(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Generate configuration for other tools"}
	var binary string
	sshCmd := &cobra.Command{
		Use:   "ssh",
		Short: "Print an OpenSSH client configuration for your nodes",
		Long: `Print an OpenSSH client configuration so that plain ssh, scp, sftp, rsync and
Ansible reach your Warden nodes through the proxy with your Warden certificate.
Host keys are checked against the cluster's host CA (no trust on first use).

  warden config ssh > ~/.ssh/warden.config
  echo 'Include ~/.ssh/warden.config' >> ~/.ssh/config     # once
  ssh dev@web1

Run it again when nodes are added; logging in again does not change it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			nodes, err := s.api.ListNodes(cmd.Context(), nil)
			if err != nil {
				return err
			}
			if binary == "" {
				if binary, err = os.Executable(); err != nil {
					return err
				}
			}
			return writeSSHConfig(g, s.p, nodes, binary)
		},
	}
	sshCmd.Flags().StringVar(&binary, "binary", "", "path of the warden binary used in ProxyCommand (default: this one)")
	cmd.AddCommand(sshCmd)
	return cmd
}

func writeSSHConfig(g *globals, p *client.Profile, nodes []wire.Node, binary string) error {
	w := g.io.Out
	home := p.Path("")
	textf(w, "# Warden cluster %q via %s, generated by `warden config ssh` for %s.\n", p.Cluster, p.Proxy, p.User)
	textf(w, "# Certificates expire %s: run `warden login` again; this file stays valid.\n\n", p.Expires.Local().Format(time.RFC1123))
	if host, port, err := net.SplitHostPort(p.Proxy); err == nil {
		// The proxy as a jump host (ssh -J LOGIN@HOST:PORT): its host
		// certificate is checked against the cluster's host CA, and it
		// gets the Warden certificate. Only on the proxy's port, so plain
		// ssh to another port of the same host keeps the user's own keys.
		textf(w, "# The proxy itself, for ssh -J LOGIN@%s (its port only).\n", p.Proxy)
		textf(w, "Match host %s exec \"test %%p = %s\"\n", host, port)
		writeSSHIdentity(w, p)
		textf(w, "\n")
	}
	if len(nodes) == 0 {
		textf(w, "# You have access to no node right now.\n")
		return nil
	}
	hosts := make([]string, 0, 2*len(nodes))
	for _, n := range nodes {
		hosts = append(hosts, n.Name, n.ID)
	}
	textf(w, "Host %s\n", strings.Join(uniqStrings(hosts), " "))
	// With ProxyUseFdpass, `warden proxy ssh` hands ssh the connection to
	// the proxy and exits: no process relays the session's bytes.
	textf(w, "    ProxyCommand %q --home %q proxy ssh --fdpass %%r@%%h:%%p\n    ProxyUseFdpass yes\n", binary, strings.TrimSuffix(home, "/"))
	// Per-session MFA: the ProxyCommand leaves the one-minute certificate
	// here before it passes the connection; ssh, which waits for it under
	// ProxyUseFdpass, reads it then, and offers it first.
	textf(w, "    CertificateFile %q\n", sessionCertGlob(p))
	writeSSHIdentity(w, p)
	return nil
}

// writeSSHIdentity writes the options of a block that reaches Warden: the
// profile's key and certificate, and host keys checked against the
// cluster's host CA only.
func writeSSHIdentity(w io.Writer, p *client.Profile) {
	textf(w, "    IdentityFile %q\n    CertificateFile %q\n    IdentitiesOnly yes\n", p.KeyPath(), p.CertPath())
	textf(w, "    UserKnownHostsFile %q\n    StrictHostKeyChecking yes\n    GlobalKnownHostsFile /dev/null\n", p.KnownHostsPath())
}

func uniqStrings(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func newProxyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "proxy", Short: "Connect other tools through the Warden proxy"}
	var fdpass bool
	var mfa sessionMFAOptions
	sshCmd := &cobra.Command{
		Use:   "ssh [LOGIN@]NODE[:PORT]",
		Short: "Connect OpenSSH to a node's SSH server through the proxy (ProxyCommand)",
		Long: `Connect to a node's SSH server through the proxy, for use as an OpenSSH
ProxyCommand (warden config ssh writes it for you). The SSH session stays end
to end between your ssh client and the node: the proxy checks your
certificate, roles and locks, then joins your connection to the node's.

By default this command relays standard input and output. With --fdpass (and
"ProxyUseFdpass yes" in ssh_config) it passes the connection itself to ssh
and exits, so no process copies the session's bytes.

Where your roles require an MFA check for each session, it asks for a code
from your authenticator on the terminal (/dev/tty), or takes it from
WARDEN_MFA_CODE or --mfa-code-file, or checks a passkey in the browser
(--mfa-passkey), or uses the batch check of "warden mfa session"; with
--fdpass it leaves the one-minute certificate where the ssh config of
"warden config ssh" makes ssh read it (CertificateFile .../session-certs/%r@%h-cert.pub).`,
		Example: `  ssh -o ProxyCommand='warden proxy ssh %r@%h:%p' dev@web1
  ssh -o ProxyUseFdpass=yes -o ProxyCommand='warden proxy ssh --fdpass %r@%h:%p' dev@web1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, login := args[0], ""
			if l, rest, ok := strings.Cut(target, "@"); ok {
				target, login = rest, l
			}
			host, _, err := net.SplitHostPort(target)
			if err != nil {
				host = target
			}
			s, pc, err := g.proxySession(cmd.Context())
			if err != nil {
				return refuseSSH(g.io, fdpass, err)
			}
			defer s.close()
			defer func() { pc.Close() }()
			mfa.ttyOnly, mfa.fdpass = true, fdpass
			conn, npc, err := g.proxyConnect(cmd.Context(), s, pc, &mfa, login, host, fdpass)
			pc = npc
			if err != nil {
				return refuseSSH(g.io, fdpass, err)
			}
			if fdpass {
				defer conn.Close()
				return passConn(g.io.Out, conn)
			}
			defer conn.Close()
			done := make(chan struct{}, 2)
			go func() {
				_, _ = io.Copy(conn, g.io.In)
				if cw, ok := conn.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
				done <- struct{}{}
			}()
			go func() {
				_, _ = io.Copy(g.io.Out, conn)
				done <- struct{}{}
			}()
			select {
			case <-done:
			case <-cmd.Context().Done():
			}
			return nil
		},
	}
	sshCmd.Flags().BoolVar(&fdpass, "fdpass", false, "pass the connection to ssh over standard output (needs ProxyUseFdpass yes)")
	addSessionMFAFlags(sshCmd, &mfa)
	cmd.AddCommand(sshCmd)
	return cmd
}

// proxySession opens the profile's session and its SSH connection to the
// proxy.
func (g *globals) proxySession(ctx context.Context) (*session, *ssh.Client, error) {
	s, err := g.session()
	if err != nil {
		return nil, nil, err
	}
	pc, err := s.proxyClient(ctx)
	if err != nil {
		s.close()
		return nil, nil, err
	}
	return s, pc, nil
}

// refusalDrainTimeout bounds how long `warden proxy ssh` waits for ssh to
// read a refusal and hang up.
const refusalDrainTimeout = 30 * time.Second

// refuseSSH tells the ssh that runs this ProxyCommand why it gets no
// connection, the way an SSH server refuses a client: a disconnect message
// with the reason, which OpenSSH prints as "Received disconnect from UNKNOWN
// port 65535:11: warden: REASON" before it exits. Returning an error
// instead would print the reason and then OpenSSH's complaints about its
// proxy command ("mm_receive_fd: recvmsg: expected received 1 got 0",
// "proxy dialer did not pass back a connection", or "kex_exchange_
// identification: Connection closed by remote host"). The process still
// exits with status 1. Where the refusal cannot reach ssh (not run by
// ssh), the error is returned as it is.
func refuseSSH(stdio *IO, fdpass bool, cause error) error {
	stream := tunnel.RefusalStream("warden: " + userMessage(cause))
	if fdpass {
		if err := passRefusal(stdio.Out, stream); err != nil {
			return cause
		}
		return exitError{1}
	}
	// ssh gives a relaying ProxyCommand a pipe; run by hand (a terminal, a
	// file), the command says it plainly.
	if f, ok := stdio.Out.(*os.File); !ok || !isPipe(f) {
		return cause
	}
	if _, err := stdio.Out.Write(stream); err != nil {
		return cause
	}
	// ssh reads the refusal and hangs up; wait for that: exiting at once
	// could close the pipe before ssh has written its own version line.
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdio.In)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(refusalDrainTimeout):
	}
	return exitError{1}
}

// isPipe reports whether f is a pipe or a socket.
func isPipe(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&(os.ModeNamedPipe|os.ModeSocket) != 0
}

// passRefusal passes ssh (ProxyUseFdpass) one end of a socket pair from
// which it reads stream. ssh waits for this process to exit before it
// uses the socket, and writes its own version line first: had the other
// end closed with this process, that write would fail (EPIPE) before ssh
// read anything. So the other end outlives the process in the one way the
// kernel offers without a process: a reference to it rides in the socket's
// own receive queue (SCM_RIGHTS), behind the stream, where ssh never reads
// (it stops at the disconnect). When ssh closes its end, the kernel drops
// the queue and with it that last reference.
func passRefusal(out io.Writer, stream []byte) error {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ours, theirs := fds[0], fds[1]
	defer syscall.Close(ours)
	defer syscall.Close(theirs)
	for rest := stream; len(rest) > 0; {
		n, err := syscall.Write(ours, rest)
		if err != nil {
			return err
		}
		rest = rest[n:]
	}
	if err := syscall.Sendmsg(ours, []byte{0}, syscall.UnixRights(ours), nil, 0); err != nil {
		return err
	}
	return sendFD(out, theirs)
}

// passConn sends conn's socket to ssh over out (sendFD).
func passConn(out io.Writer, conn net.Conn) error {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return errors.New("--fdpass needs a direct connection to the proxy")
	}
	f, err := tc.File()
	if err != nil {
		return err
	}
	defer f.Close()
	return sendFD(out, int(f.Fd()))
}

// sendFD sends the descriptor fd over out, which must be the Unix socket
// OpenSSH gives a ProxyCommand under ProxyUseFdpass, as one byte with
// SCM_RIGHTS (what OpenSSH's mm_receive_fd expects).
func sendFD(out io.Writer, fd int) error {
	sc, ok := out.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return errors.New("--fdpass needs standard output to be a socket (ProxyUseFdpass yes)")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var sendErr error
	if err := rc.Control(func(sock uintptr) {
		sendErr = syscall.Sendmsg(int(sock), []byte{0}, syscall.UnixRights(fd), nil, 0)
	}); err != nil {
		return err
	}
	if sendErr != nil {
		return fmt.Errorf("--fdpass: cannot pass the connection to ssh (is ProxyUseFdpass yes set?): %w", sendErr)
	}
	return nil
}
