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
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/client/sshclient"
)

type terminalData struct {
	// Title is what the page's heading shows (login@node, or the session
	// joined).
	Title, WS string
	// ReadOnly terminals (observers) send no keys.
	ReadOnly bool
}

// terminalPage is the page of a web terminal; its script opens the
// WebSocket (terminalSocket).
func (h *Handler) terminalPage(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	node, login := r.PathValue("node"), r.URL.Query().Get("login")
	if login == "" && len(s.logins) > 0 {
		login = s.logins[0]
	}
	h.renderTerminal(w, h.view(s, login+"@"+node, "servers", terminalData{Title: login + "@" + node,
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

// resizeMsg is the text message the terminal sends when its size changes.
type resizeMsg struct {
	Cols int `json:"cols"`
	Rows int `json:"rows"`
}

// terminalSocket bridges a WebSocket to an SSH shell on a node. It
// connects as `warden ssh` does, with the session's own certificate:
// to the proxy (which checks the user, their requests and locks, and
// the node), then end to end to the node (roles, login, locks, recording,
// audit). The WebSocket's Origin must be this host.
func (h *Handler) terminalSocket(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	h.bridge(w, r, s, c, r.PathValue("node"), r.URL.Query().Get("login"), "", true)
}

// bridge accepts the WebSocket and connects it to an SSH session on node
// as login: a shell (command ""), or command (a join). With input, the
// browser's keys and size go to the session's terminal; without (an
// observer), the session only sends.
func (h *Handler) bridge(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller, node, login, command string, input bool) {
	ws, err := websocket.Accept(w, r, nil) // refuses another Origin
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(64 << 10)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	fail := func(msg string) {
		_ = ws.Write(ctx, websocket.MessageText, []byte(msg))
		_ = ws.Close(websocket.StatusPolicyViolation, truncate(msg, 120))
	}
	client, err := h.dialNode(ctx, s, c, node, login)
	if err != nil {
		if statusOf(err) == http.StatusInternalServerError {
			h.log.Info("web terminal: connect", "user", c.User, "err", err)
		}
		fail(err.Error())
		return
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		fail("open session: " + err.Error())
		return
	}
	defer sess.Close()
	// The first message is the terminal's size.
	size := resizeMsg{Cols: 80, Rows: 24}
	if typ, b, err := ws.Read(ctx); err == nil && typ == websocket.MessageText {
		_ = json.Unmarshal(b, &size)
	}
	if input {
		if err := sess.RequestPty("xterm-256color", clamp(size.Rows), clamp(size.Cols), ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
			fail("terminal: " + err.Error())
			return
		}
	}
	stdin, _ := sess.StdinPipe()
	// The shell's output and its stderr (where the node writes why it
	// ends a session: a lock, a removal) both go to the terminal.
	out := &wsWriter{ctx: ctx, ws: ws, cancel: cancel}
	sess.Stdout, sess.Stderr = out, out
	if command == "" {
		err = sess.Shell()
	} else {
		err = sess.Start(command)
	}
	if err != nil {
		fail("start: " + err.Error())
		return
	}
	// Browser → session. An observer's keys are dropped; reading goes on
	// to notice the browser leaving.
	go func() {
		defer cancel()
		for {
			typ, b, err := ws.Read(ctx)
			if err != nil {
				return
			}
			if !input {
				continue
			}
			if typ == websocket.MessageText {
				var m resizeMsg
				if json.Unmarshal(b, &m) == nil {
					_ = sess.WindowChange(clamp(m.Rows), clamp(m.Cols))
				}
				continue
			}
			if _, err := stdin.Write(b); err != nil {
				return
			}
		}
	}()
	// Session → browser, until the session ends (Wait returns once its
	// output is copied) or the browser goes.
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		var exit *ssh.ExitError
		if err == nil || errors.As(err, &exit) {
			_ = ws.Close(websocket.StatusNormalClosure, "session ended")
			return
		}
		// Cut without an exit status: say why if the identity no longer
		// holds (the proxy may cut a locked connection before the node's
		// message arrives).
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		if _, cerr := h.auth.CurrentCaller(cctx, s.caller, "web terminal "+r.URL.Path, remoteIP(r)); cerr != nil {
			fail("session ended: " + h.message(cerr))
			return
		}
		_ = ws.Close(websocket.StatusNormalClosure, "connection to the node lost")
	case <-ctx.Done():
	}
}

// wsWriter sends what it is given as binary WebSocket messages; the SSH
// session's stdout and stderr copiers share it.
type wsWriter struct {
	ctx    context.Context
	ws     *websocket.Conn
	cancel context.CancelFunc
	mu     sync.Mutex
}

func (w *wsWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.ws.Write(w.ctx, websocket.MessageBinary, p); err != nil {
		w.cancel()
		return 0, err
	}
	return len(p), nil
}

func clamp(n int) int { return min(max(n, 1), 1000) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// dialNode connects to a node the user may see, as login, through the
// proxy's SSH side with the session's certificate.
func (h *Handler) dialNode(ctx context.Context, s *session, c auth.Caller, name, login string) (*ssh.Client, error) {
	if h.proxyAddr == nil || h.proxyAddr() == "" {
		return nil, errors.New("the web terminal needs the proxy")
	}
	nodes, err := h.auth.ListNodes(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	var id string
	for _, n := range nodes {
		if n.Name == name || n.ID == name {
			if id != "" {
				return nil, fmt.Errorf("%w: several nodes are called %q; use its id", auth.ErrBadRequest, name)
			}
			id = n.ID
		}
	}
	if id == "" {
		return nil, fmt.Errorf("%w: node %q not found among the nodes you may access", auth.ErrAccessDenied, name)
	}
	cert, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.sshCert))
	if err != nil {
		return nil, err
	}
	key, err := ssh.NewSignerFromKey(s.key)
	if err != nil {
		return nil, err
	}
	sc, ok := cert.(*ssh.Certificate)
	if !ok {
		return nil, errors.New("the session has no SSH certificate")
	}
	signer, err := ssh.NewCertSigner(sc, key)
	if err != nil {
		return nil, err
	}
	cas := []ssh.PublicKey{h.auth.Authority().HostCAPublicKey()}
	proxyAddr := h.proxyAddr()
	pc, err := sshclient.Dial(ctx, sshclient.Config{User: c.User, Addr: proxyAddr, Signer: signer, HostCAs: cas,
		Timeout: 15 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	nc, err := sshclient.Dial(ctx, sshclient.Config{User: login, Addr: net.JoinHostPort(id, "0"), Signer: signer, HostCAs: cas,
		HostName: id, Timeout: 15 * time.Second,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return pc.Dial("tcp", net.JoinHostPort(id, "0"))
		}})
	if err != nil {
		pc.Close()
		// sshclient's messages are the ones `warden ssh` shows.
		return nil, errors.New(strings.ReplaceAll(err.Error(), id, "node "+name))
	}
	go func() {
		_ = nc.Wait()
		pc.Close()
	}()
	return nc, nil
}
