package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/client/sshclient"
	"github.com/warden-sh/warden/internal/tunnel"
)

type terminalData struct {
	// Title is what the page's heading shows (login@node, or the session
	// joined).
	Title, WS string
	// ReadOnly terminals (observers) send no keys.
	ReadOnly bool
	// GraceMS is the resume grace window (the page stops trying after it).
	GraceMS int64
}

// terminalPage is the page of a web terminal; its script opens the
// WebSocket (terminalSocket).
func (h *Handler) terminalPage(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	node, login := r.PathValue("node"), r.URL.Query().Get("login")
	if login == "" && len(s.logins) > 0 {
		login = s.logins[0]
	}
	h.renderTerminal(w, h.view(s, login+"@"+node, "servers", terminalData{Title: login + "@" + node, GraceMS: h.terms.grace.Milliseconds(),
		WS: Prefix + "servers/" + url.PathEscape(node) + "/ws?" + url.Values{"login": {login}}.Encode()}))
}

// renderTerminal renders a terminal page. xterm's renderer adds <style>
// elements: this page admits styles with its own nonce (terminal.js stamps
// it on them), still no inline script.
func (h *Handler) renderTerminal(w http.ResponseWriter, v view, page ...string) {
	nonce := randomToken()
	w.Header().Set("Content-Security-Policy", strings.Replace(csp, "style-src 'self'", "style-src 'self' 'nonce-"+nonce+"'", 1))
	v.StyleNonce = nonce
	name := "terminal"
	if len(page) > 0 {
		name = page[0]
	}
	h.render(w, http.StatusOK, name, v)
}

// terminalSocket bridges a WebSocket to an SSH shell on a node. It
// connects as `warden ssh` does, with the session's own certificate:
// to the proxy (which checks the user, their requests and locks, and
// the node), then end to end to the node (roles, login, locks, recording,
// audit). The WebSocket's Origin must be this host.
func (h *Handler) terminalSocket(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	h.bridge(w, r, s, c, r.PathValue("node"), r.URL.Query().Get("login"), "", true)
}

// bridge accepts the WebSocket and shows a terminal on it: a new one,
// connected to an SSH session on node as login running a shell (command
// "") or command (a join), or, when the first message carries a resume
// token, the terminal that token names (resume.go). With input, the
// browser's keys and size go to the session's terminal; without (an
// observer), the session only sends.
func (h *Handler) bridge(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller, node, login, command string, input bool) {
	ws, err := websocket.Accept(w, r, nil) // refuses another Origin
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(64 << 10)
	ctx := r.Context()
	// The first message is the terminal's size, and the resume token and
	// output offset when the page comes back.
	hello := clientMsg{Cols: 80, Rows: 24}
	hctx, hcancel := context.WithTimeout(ctx, helloTimeout)
	typ, b, err := ws.Read(hctx)
	hcancel()
	if err != nil {
		return
	}
	if typ == websocket.MessageText {
		_ = json.Unmarshal(b, &hello)
	}
	if hello.Resume != "" {
		// A resume is audited (web.terminal_resume), refused or not.
		record := func(t *terminal, away time.Duration, err error) {
			res := auth.WebTerminalResume{Session: s.tag(), RemoteAddr: remoteIP(r), Offset: hello.Offset, Away: away}
			if t != nil {
				res.Node, res.Login = t.node, t.login
			}
			if err != nil {
				res.Error = err.Error()
				h.log.Info("web terminal: resume refused", "user", c.User, "session", s.tag(), "err", err)
			}
			h.auth.RecordWebTerminalResume(context.WithoutCancel(ctx), c, res)
		}
		t, err := h.terms.lookup(hello.Resume, s.hash, c.User)
		if err != nil {
			record(nil, 0, err)
			refuseSocket(ws, "cannot resume: "+err.Error())
			return
		}
		away := t.awayFor()
		t.serve(ctx, ws, hello.Offset, func(err error) { record(t, away, err) })
		return
	}
	if h.terms.count(s.hash) >= maxTerminalsPerSession {
		refuseSocket(ws, "too many open terminals in this browser session; close some first")
		return
	}
	n, err := h.findNode(ctx, c, node)
	if err != nil {
		refuseSocket(ws, err.Error())
		return
	}
	// A node that needs an MFA check for each session gets it first, over
	// this socket; the terminal then runs as the per-session certificate.
	caller := s.caller
	var signer ssh.Signer
	if command == "" && input {
		signer, c, err = h.sessionMFA(ctx, ws, s, c, n, login, &hello)
		if err != nil {
			h.log.Info("web terminal: per-session MFA", "user", c.User, "node", n.Name, "err", err)
			refuseSocket(ws, h.message(err))
			return
		}
		caller.MFADevice = c.MFADevice
	}
	client, err := h.dialNode(ctx, s, c, n, login, r.RemoteAddr, signer)
	if err != nil {
		if statusOf(err) == http.StatusInternalServerError {
			h.log.Info("web terminal: connect", "user", c.User, "err", err)
		}
		refuseSocket(ws, err.Error())
		return
	}
	sess, err := client.NewSession()
	if err != nil {
		client.Close()
		refuseSocket(ws, "open session: "+err.Error())
		return
	}
	if input {
		if err := sess.RequestPty("xterm-256color", clamp(hello.Rows), clamp(hello.Cols), ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
			client.Close()
			refuseSocket(ws, "terminal: "+err.Error())
			return
		}
	}
	t := newTerminal(h.terms, s.hash, c.User, input)
	t.client, t.sess, t.node, t.login = client, sess, n.Name, login
	t.stdin, _ = sess.StdinPipe()
	// The shell's output and its stderr (where the node writes why it
	// ends a session: a lock, a removal) both go to the terminal.
	sess.Stdout, sess.Stderr = t, t
	if command == "" {
		err = sess.Shell()
	} else {
		err = sess.Start(command)
	}
	if err == nil {
		err = h.terms.add(t)
	}
	if err != nil {
		client.Close()
		refuseSocket(ws, "start: "+err.Error())
		return
	}
	// The session outlives this socket: it ends when the shell does, or
	// when no page has shown it for the grace window.
	via, ip := "web terminal "+r.URL.Path, remoteIP(r)
	id := s.identity(ip)
	go func() {
		err := sess.Wait()
		if !t.isAborted() {
			t.end(h.sessionEnd(caller, id, via, ip, err))
		}
	}()
	t.serve(ctx, ws, 0, nil)
}

func clamp(n int) int { return min(max(n, 1), 1000) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// findNode finds the one node, among those the user may see, that name
// (its name or id) names.
func (h *Handler) findNode(ctx context.Context, c auth.Caller, name string) (auth.Node, error) {
	if h.proxyAddr == nil || h.proxyAddr() == "" {
		return auth.Node{}, errors.New("the web terminal needs the proxy")
	}
	nodes, err := h.auth.ListNodes(ctx, c, nil)
	if err != nil {
		return auth.Node{}, err
	}
	var found *auth.Node
	for i, n := range nodes {
		if n.Name == name || n.ID == name {
			if found != nil {
				return auth.Node{}, fmt.Errorf("%w: several nodes are called %q; use its id", auth.ErrBadRequest, name)
			}
			found = &nodes[i]
		}
	}
	if found == nil {
		return auth.Node{}, fmt.Errorf("%w: node %q not found among the nodes you may access", auth.ErrAccessDenied, name)
	}
	return *found, nil
}

// dialNode connects to node n as login, through the proxy's SSH side
// with the session's certificate, or signer's (a per-session MFA
// certificate) if set. clientAddr is the browser's address: with
// Config.DialProxy the proxy, and so the node, see it as the
// connection's client address.
func (h *Handler) dialNode(ctx context.Context, s *session, c auth.Caller, n auth.Node, login, clientAddr string, signer ssh.Signer) (*ssh.Client, error) {
	id, name := n.ID, n.Name
	if signer == nil {
		sc, err := parseCert(s.sshCert)
		if err != nil {
			return nil, errors.New("the session has no SSH certificate")
		}
		key, err := ssh.NewSignerFromKey(s.key)
		if err != nil {
			return nil, err
		}
		if signer, err = ssh.NewCertSigner(sc, key); err != nil {
			return nil, err
		}
	}
	cas := h.auth.HostCAPublicKeys()
	proxyAddr := h.proxyAddr()
	var dial func(ctx context.Context, _, _ string) (net.Conn, error)
	if h.dialProxy != nil {
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) { return h.dialProxy(ctx, clientAddr, false) }
	}
	pc, err := sshclient.Dial(ctx, sshclient.Config{User: c.User, Addr: proxyAddr, Signer: signer, HostCAs: cas,
		Timeout: 15 * time.Second, Dial: dial})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	viaData := false
	nc, err := sshclient.Dial(ctx, sshclient.Config{User: login, Addr: net.JoinHostPort(id, "0"), Signer: signer, HostCAs: cas,
		HostName: id, Timeout: 15 * time.Second,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			// As `warden ssh`: a data connection, which the proxy relays
			// without its own SSH layer, when it offers them.
			// In process, the node's connection itself.
			if h.dialProxy != nil {
				var conn net.Conn
				var err error
				if h.redeemData != nil {
					conn, err = tunnel.DialDataRedeem(pc, id, func(ticket string) (net.Conn, error) {
						return h.redeemData(clientAddr, ticket)
					})
				} else {
					conn, err = tunnel.DialDataVia(ctx, pc, id, func(ctx context.Context) (net.Conn, error) {
						return h.dialProxy(ctx, clientAddr, true)
					})
				}
				if !errors.Is(err, tunnel.ErrNoDataConns) {
					viaData = err == nil
					return conn, err
				}
			}
			return pc.Dial("tcp", net.JoinHostPort(id, "0"))
		}})
	if err != nil {
		pc.Close()
		// sshclient's messages are the ones `warden ssh` shows.
		return nil, errors.New(strings.ReplaceAll(err.Error(), id, "node "+name))
	}
	if viaData {
		// A data connection does not need the connection to the proxy.
		pc.Close()
		return nc, nil
	}
	go func() {
		_ = nc.Wait()
		pc.Close()
	}()
	return nc, nil
}
