package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/tunnel"
	"github.com/warden-sh/warden/internal/wire"
)

// Per-session MFA on the client side (docs/session-mfa.md): before a
// session to a node that requires it, the fresh MFA check, answered on
// the terminal (or from a file, WARDEN_MFA_CODE, or a passkey in the
// browser), yields a certificate for that node and login, valid about a
// minute and used once.

// envMFACode is the environment variable a script sets to a TOTP code.
const envMFACode = "WARDEN_MFA_CODE"

// maxMFACodeFile bounds what --mfa-code-file reads.
const maxMFACodeFile = 256

// sessionMFAOptions are the flags that answer a per-session MFA check.
type sessionMFAOptions struct {
	codeFile string
	passkey  bool
	browser  string
	// sessions asks one check to cover this many sessions (a batch, where
	// the roles allow session_mfa_window).
	sessions int
	// ttyOnly: never read standard input (it belongs to ssh).
	ttyOnly bool
	// fdpass: `warden proxy ssh --fdpass` (the certificate is left for ssh).
	fdpass bool
}

func addSessionMFAFlags(cmd *cobra.Command, o *sessionMFAOptions) {
	cmd.Flags().StringVar(&o.codeFile, "mfa-code-file", "", "where a node needs an MFA check per session: read the TOTP code from this file (- for standard input); or set "+envMFACode)
	cmd.Flags().BoolVar(&o.passkey, "mfa-passkey", false, "where a node needs an MFA check per session: answer it with a passkey, in your browser")
	cmd.Flags().StringVar(&o.browser, "mfa-browser", "", "with --mfa-passkey: none prints the URL instead of opening a browser")
}

// sessionMFASigner makes the per-session MFA check for a session as login
// to the nodes (ids) and returns a signer with the per-session
// certificate. With known (the proxy refused the session for want of the
// check: tunnel.CodeSessionMFA) it asks no status first; otherwise it asks
// auth whether the nodes need a check, and returns nil when they do not.
func (g *globals) sessionMFASigner(ctx context.Context, s *session, o *sessionMFAOptions, nodes []string, nodeNames, login string, known bool) (ssh.Signer, *wire.SessionCert, error) {
	var st *wire.SessionMFAStatus
	if !known {
		var err error
		st, err = s.api.SessionMFAStatus(ctx, wire.SessionMFAQuery{Nodes: nodes, Login: login})
		if err != nil {
			// Connect as before: where a check was needed, the proxy and the
			// node refuse with the reason (an older auth, a role changing).
			return nil, nil, nil
		}
		if !st.Required {
			return nil, nil, nil
		}
	}
	status := func() *wire.SessionMFAStatus {
		if st == nil {
			// Only to choose how to ask (a code, or a passkey for a user
			// with passkeys only): not on the path of a scripted answer.
			var err error
			if st, err = s.api.SessionMFAStatus(ctx, wire.SessionMFAQuery{Nodes: nodes, Login: login}); err != nil {
				st = &wire.SessionMFAStatus{Required: true, TOTP: true}
			}
		}
		return st
	}
	answer, err := g.sessionMFAAnswer(ctx, s, o, status, nodeNames)
	if err != nil {
		return nil, nil, err
	}
	key, err := profileKey(s.p)
	if err != nil {
		return nil, nil, err
	}
	sessions := 0
	if o != nil {
		sessions = o.sessions
	}
	sc, err := s.api.IssueSessionCert(ctx, wire.SessionCertRequest{PublicKey: string(ssh.MarshalAuthorizedKey(key.PublicKey())),
		Nodes: nodes, Login: login, Sessions: sessions, MFA: *answer})
	if err != nil {
		return nil, nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(sc.SSHCert))
	if err != nil {
		return nil, nil, fmt.Errorf("per-session certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, nil, errors.New("per-session certificate: not a certificate")
	}
	signer, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		return nil, nil, err
	}
	return signer, sc, nil
}

// profileKey is the profile's private key, without its certificate.
func profileKey(p *client.Profile) (ssh.Signer, error) {
	keyPEM, err := os.ReadFile(p.KeyPath())
	if err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey(keyPEM)
}

// sessionMFAAnswer gets the answer to the check: --mfa-code-file,
// WARDEN_MFA_CODE, --mfa-passkey, or a prompt on the terminal; with none
// of them, an error that says how to comply.
func (g *globals) sessionMFAAnswer(ctx context.Context, s *session, o *sessionMFAOptions, status func() *wire.SessionMFAStatus, nodes string) (*wire.MFAResponse, error) {
	if o == nil {
		o = &sessionMFAOptions{}
	}
	switch {
	case o.codeFile == "-" && o.ttyOnly:
		return nil, errors.New("--mfa-code-file -: standard input is ssh's connection here; use a file or " + envMFACode)
	case o.codeFile == "-":
		// One line, read byte by byte: the rest of standard input stays
		// for the remote command.
		line, err := readTTYLine(g.io.In)
		if err != nil {
			return nil, fmt.Errorf("--mfa-code-file -: %w", err)
		}
		return &wire.MFAResponse{OTP: strings.TrimSpace(line)}, nil
	case o.codeFile != "":
		f, err := os.Open(o.codeFile)
		if err != nil {
			return nil, fmt.Errorf("--mfa-code-file: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxMFACodeFile))
		if err != nil {
			return nil, fmt.Errorf("--mfa-code-file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		return &wire.MFAResponse{OTP: strings.TrimSpace(line)}, nil
	case os.Getenv(envMFACode) != "":
		return &wire.MFAResponse{OTP: strings.TrimSpace(os.Getenv(envMFACode))}, nil
	case o.passkey:
		textf(g.io.Err, "%s requires an MFA check for this session: confirm with your passkey in the browser.\n", nodes)
		return client.MFAWithPasskey(ctx, s.api, func(u string) error { return openBrowser(g, o.browser, u) }, 0)
	}
	howTo := fmt.Sprintf("%s requires an MFA check for each session, and no terminal is here to ask it: "+
		"set %s to a code from your authenticator, or pass --mfa-code-file FILE (- for standard input), or --mfa-passkey "+
		"(for ssh through the ProxyCommand: %s=CODE ssh ...)", nodes, envMFACode, envMFACode)
	if st := status(); !st.TOTP && st.WebAuthn {
		textf(g.io.Err, "%s requires an MFA check for this session: your devices are passkeys, so it happens in the browser.\n", nodes)
		return client.MFAWithPasskey(ctx, s.api, func(u string) error { return openBrowser(g, o.browser, u) }, 0)
	}
	label := fmt.Sprintf("MFA check for %s: code from your authenticator", nodes)
	if !o.ttyOnly && g.io.stdinIsTerminal() {
		code, err := g.io.prompt(label, false)
		if err != nil {
			return nil, err
		}
		return &wire.MFAResponse{OTP: strings.TrimSpace(code)}, nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, errors.New(howTo)
	}
	defer tty.Close()
	if !term.IsTerminal(int(tty.Fd())) {
		return nil, errors.New(howTo)
	}
	fmt.Fprintf(tty, "%s: ", label)
	code, err := readTTYLine(tty)
	if err != nil {
		return nil, fmt.Errorf("reading the MFA code from the terminal: %w", err)
	}
	return &wire.MFAResponse{OTP: strings.TrimSpace(code)}, nil
}

// readTTYLine reads one short line from the terminal, byte by byte (no
// read-ahead past it).
func readTTYLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < maxMFACodeFile {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				break
			}
			b = append(b, one[0])
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(b) > 0 {
				break
			}
			return "", err
		}
	}
	return strings.TrimRight(string(b), "\r"), nil
}

// sessionCertPath is where `warden proxy ssh` leaves the per-session
// certificate for the ssh that runs it to read (the CertificateFile
// `warden config ssh` lists first, with the same %r@%h).
func sessionCertPath(p *client.Profile, login, host string) (string, error) {
	if login == "" || strings.ContainsAny(login+host, "/\x00") || host == "" || host[0] == '.' {
		return "", fmt.Errorf("cannot name a per-session certificate for %q@%q", login, host)
	}
	return filepath.Join(p.Path("session-certs"), login+"@"+host+"-cert.pub"), nil
}

// sessionCertGlob is the CertificateFile line's pattern (ssh expands %r
// and %h).
func sessionCertGlob(p *client.Profile) string {
	return filepath.Join(p.Path("session-certs"), "%r@%h-cert.pub")
}

// writeSessionCert writes the per-session certificate where ssh reads it.
func writeSessionCert(path, cert string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.%d.tmp", path, os.Getpid(), time.Now().UnixNano())
	if err := os.WriteFile(tmp, []byte(cert+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// proxyConnect connects `warden proxy ssh` to host through the proxy
// connection pc, with the login certificate first; when the proxy refuses
// it for want of a per-session MFA check (tunnel.CodeSessionMFA), it takes
// a batch certificate of `warden mfa session` or makes the check, leaves
// the certificate for ssh (with fdpass), and connects once more with it.
// So a session that needs no check costs no call to auth. It returns the
// connection and the proxy connection it runs on (pc, or a new one).
func (g *globals) proxyConnect(ctx context.Context, s *session, pc *ssh.Client, o *sessionMFAOptions, login, host string, fdpass bool) (net.Conn, *ssh.Client, error) {
	var path string
	if login != "" {
		var err error
		if path, err = sessionCertPath(s.p, login, host); err == nil {
			_ = os.Remove(path) // a spent one would cost ssh an attempt
		} else {
			path = ""
		}
	}
	reach := func(conn net.Conn, pc *ssh.Client, err error) (net.Conn, *ssh.Client, error) {
		if err != nil {
			return nil, pc, fmt.Errorf("cannot reach %s through the proxy: %w", host, err)
		}
		return conn, pc, nil
	}
	conn, err := tunnel.DialData(ctx, pc, s.p.Proxy, host)
	if errors.Is(err, tunnel.ErrNoDataConns) && !fdpass {
		// Through a channel the refusal would come inside the stream
		// ssh reads: ask whether a check is needed first.
		if pc, err = g.proxySessionMFA(ctx, s, pc, o, login, host, path, false); err != nil {
			return nil, pc, err
		}
		conn, err = s.dialNode(ctx, pc, host)
		return reach(conn, pc, err)
	}
	if err == nil || login == "" || !tunnel.HasCode(err, tunnel.CodeSessionMFA) {
		return reach(conn, pc, err)
	}
	npc, err := g.proxySessionMFA(ctx, s, pc, o, login, host, path, true)
	if err != nil {
		return nil, pc, err
	}
	conn, err = tunnel.DialData(ctx, npc, s.p.Proxy, host)
	return reach(conn, npc, err)
}

// proxySessionMFA is per-session MFA in `warden proxy ssh`: when the node
// needs a check (known: the proxy said so), it makes the check (or takes
// a batch certificate of `warden mfa session`), leaves the certificate
// for ssh at path (with fdpass), and returns a proxy connection made with
// it; else pc as it was.
func (g *globals) proxySessionMFA(ctx context.Context, s *session, pc *ssh.Client, o *sessionMFAOptions, login, host, path string, known bool) (*ssh.Client, error) {
	if login == "" {
		return pc, nil
	}
	fdpass := o != nil && o.fdpass
	n, err := s.resolveNode(ctx, host)
	if err != nil {
		return pc, nil // the proxy refuses it with its own reason
	}
	var signer ssh.Signer
	var certText string
	if b := loadBatchCert(s.p, n.ID, login); b != nil {
		signer, certText = b.signer, b.Cert
	} else {
		var sc *wire.SessionCert
		signer, sc, err = g.sessionMFASigner(ctx, s, o, []string{n.ID}, fmt.Sprintf("node %q", n.Name), login, known)
		if err != nil {
			return nil, err
		}
		if signer == nil {
			return pc, nil
		}
		certText = sc.SSHCert
	}
	if fdpass {
		if path == "" {
			return nil, fmt.Errorf("cannot leave a per-session certificate for %s@%s", login, host)
		}
		if err := writeSessionCert(path, certText); err != nil {
			return nil, err
		}
	}
	s.signer = signer
	npc, err := s.proxyClient(ctx)
	if err != nil {
		return nil, err
	}
	pc.Close()
	return npc, nil
}

// batchCert is a batch check's certificate as `warden mfa session` leaves
// it for later `warden proxy ssh` runs (0600, in the profile).
type batchCert struct {
	Cert    string    `json:"cert"`
	Login   string    `json:"login"`
	Nodes   []string  `json:"nodes"`
	Expires time.Time `json:"expires"`
	signer  ssh.Signer
}

func batchCertPath(p *client.Profile) string {
	return p.Path(filepath.Join("session-certs", "batch.json"))
}

// loadBatchCert returns the batch certificate if it covers login on the
// node and has not expired; nil otherwise.
func loadBatchCert(p *client.Profile, nodeID, login string) *batchCert {
	data, err := os.ReadFile(batchCertPath(p))
	if err != nil || len(data) > 64<<10 {
		return nil
	}
	var b batchCert
	if json.Unmarshal(data, &b) != nil || b.Login != login || !slices.Contains(b.Nodes, nodeID) || !time.Now().Before(b.Expires) {
		return nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(b.Cert))
	if err != nil {
		return nil
	}
	cert, ok := pub.(*ssh.Certificate)
	key, kerr := profileKey(p)
	if !ok || kerr != nil {
		return nil
	}
	if b.signer, err = ssh.NewCertSigner(cert, key); err != nil {
		return nil
	}
	return &b
}

func newMFASessionCmd(g *globals) *cobra.Command {
	var o sessionMFAOptions
	var login string
	cmd := &cobra.Command{
		Use:   "session --login LOGIN NODE...",
		Short: "One MFA check for a batch of sessions (an Ansible run), where your roles allow it",
		Long: `Where your roles require an MFA check for each session but allow one check
to cover a batch (session_mfa_window, session_mfa_max_sessions), make that
check now for the nodes named up front, as LOGIN. Until the window ends, ssh
through the ProxyCommand of "warden config ssh" (and so scp, rsync, Ansible)
uses it for those nodes without asking again, up to the sessions allowed.

The code comes from the terminal, --mfa-code-file, WARDEN_MFA_CODE, or a
passkey in the browser (--mfa-passkey).`,
		Example: `  warden mfa session --login ops web1 web2 && ansible-playbook -i web1,web2 site.yml
  WARDEN_MFA_CODE=123456 warden mfa session --login ops --sessions 10 web1 web2`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			if login == "" {
				if login, err = s.defaultLogin(); err != nil {
					return err
				}
			}
			var ids, names []string
			for _, a := range args {
				n, err := s.resolveNode(cmd.Context(), a)
				if err != nil {
					return err
				}
				ids, names = append(ids, n.ID), append(names, n.Name)
			}
			st, err := s.api.SessionMFAStatus(cmd.Context(), wire.SessionMFAQuery{Nodes: ids, Login: login})
			if err != nil {
				return err
			}
			var sc *wire.SessionCert
			if st.Required {
				_, sc, err = g.sessionMFASigner(cmd.Context(), s, &o, ids, strings.Join(names, ", "), login, true)
			}
			if err != nil {
				return err
			}
			if sc == nil {
				textf(g.io.Out, "No MFA check is needed for sessions as %s to %s.\n", login, strings.Join(names, ", "))
				return nil
			}
			data, err := json.Marshal(batchCert{Cert: sc.SSHCert, Login: login, Nodes: ids, Expires: sc.Expires})
			if err != nil {
				return err
			}
			path := batchCertPath(s.p)
			if err := writeSessionCert(path, string(data)); err != nil {
				return err
			}
			textf(g.io.Out, "MFA check done: %d sessions as %s to %s until %s.\n", sc.MaxSessions, login, strings.Join(names, ", "),
				sc.Expires.Local().Format(time.TimeOnly))
			return nil
		},
	}
	cmd.Flags().StringVarP(&login, "login", "l", "", "the OS login of the sessions")
	cmd.Flags().IntVar(&o.sessions, "sessions", 0, "how many sessions in all (default: one per node)")
	addSessionMFAFlags(cmd, &o)
	return cmd
}
