package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

// Resumable web terminals. The SSH session of a web terminal belongs to
// a terminal, not to the WebSocket that shows it: when the browser's
// socket drops, the terminal keeps the session for the grace window
// (Config.ResumeGrace, DefaultResumeGrace), holding
// the output the browser has not acknowledged (at most termWindow bytes;
// past that the session's output waits, through SSH flow control, as it
// would for a slow reader). The page reconnects with the resume token it
// was given, in the first message of a new socket (never in the URL), and
// the offset of the output it has; the server sends the rest and goes on.
// A token names one terminal, is bound to the browser session that opened
// it (its cookie) and the user, is replaced by a new one at every attach
// (the previous socket, if any, is closed: one holder at a time), and is
// valid only while the terminal lives in this proxy process.
const (
	// DefaultResumeGrace is how long a terminal waits for its browser to
	// come back before it ends the SSH session (Config.ResumeGrace).
	DefaultResumeGrace = 60 * time.Second
	// MaxResumeGrace bounds Config.ResumeGrace: a session nobody sees is
	// not kept for long.
	MaxResumeGrace = time.Hour
	// termWindow bounds the output a terminal holds that its browser has
	// not acknowledged.
	termWindow = 1 << 20
	// termChunk is the most output one WebSocket message carries.
	termChunk = 256 << 10
	// directMax is the most output the session's writer sends itself.
	directMax = 1024
	// maxTerminalsPerSession bounds the terminals (attached or waiting for
	// their browser) of one browser session.
	maxTerminalsPerSession = 32
	// pingInterval is how often an attached socket is probed; a socket that
	// does not answer within pingTimeout is taken as gone.
	pingInterval = 20 * time.Second
	pingTimeout  = 15 * time.Second
	// helloTimeout bounds the wait for a new socket's first message.
	helloTimeout = 15 * time.Second
)

// clientMsg is a text message from the page: the first one of a socket
// (size, and resume token and offset when it resumes), a resize, or an
// acknowledgement of the output it has written (ack: total bytes).
type clientMsg struct {
	Cols   int    `json:"cols"`
	Rows   int    `json:"rows"`
	Resume string `json:"resume,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	Ack    *int64 `json:"ack,omitempty"`
	// The answer to a per-session MFA check (sessionmfa.go): MFABegin
	// asks for a passkey challenge; OTP is a code, or ChallengeID and
	// WebAuthn the passkey's assertion.
	MFABegin    bool            `json:"mfa_begin,omitempty"`
	OTP         string          `json:"otp,omitempty"`
	ChallengeID string          `json:"challenge_id,omitempty"`
	WebAuthn    json.RawMessage `json:"webauthn,omitempty"`
}

// serverMsg is a text message to the page: on attach, the resume token
// and the offset the output continues from; before a close, the reason.
type serverMsg struct {
	Token  string `json:"token,omitempty"`
	Offset int64  `json:"offset"`
	Reason string `json:"reason,omitempty"`
	// MFA asks for a per-session MFA check before the terminal opens;
	// Challenge is the passkey challenge asked for; MFAError says why an
	// answer was refused (another may be given).
	MFA       *mfaPrompt         `json:"mfa,omitempty"`
	Challenge *wire.MFAChallenge `json:"challenge,omitempty"`
	MFAError  string             `json:"mfa_error,omitempty"`
}

// statusTakenOver closes a socket whose terminal another socket resumed.
const statusTakenOver websocket.StatusCode = 4000

// errTerminalGone is the refusal of a resume whose token names no
// terminal.
var errTerminalGone = errors.New("this terminal session is gone: it ended, its page was away longer than " +
	"the grace window, it was resumed in another window, or the proxy restarted")

// terminals is the registry of live web terminals of this process.
type terminals struct {
	mu      sync.Mutex
	byToken map[string]*terminal // by the SHA-256 of the current token
	byOwner map[string]map[*terminal]struct{}
	grace   time.Duration
}

func newTerminals(grace time.Duration) *terminals {
	if grace <= 0 {
		grace = DefaultResumeGrace
	}
	return &terminals{byToken: map[string]*terminal{}, byOwner: map[string]map[*terminal]struct{}{}, grace: grace}
}

// add registers t, unless its browser session has too many terminals.
func (r *terminals) add(t *terminal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byOwner[t.owner]) >= maxTerminalsPerSession {
		return errors.New("too many open terminals in this browser session; close some first")
	}
	if r.byOwner[t.owner] == nil {
		r.byOwner[t.owner] = map[*terminal]struct{}{}
	}
	r.byOwner[t.owner][t] = struct{}{}
	return nil
}

// count is the number of terminals of a browser session.
func (r *terminals) count(owner string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byOwner[owner])
}

// rotate gives t a new token, revoking its previous one.
func (r *terminals) rotate(t *terminal) string {
	tok := randomToken()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, live := r.byOwner[t.owner][t]; !live {
		return ""
	}
	if t.token != "" {
		delete(r.byToken, t.token)
	}
	t.token = hashID(tok)
	r.byToken[t.token] = t
	return tok
}

func (r *terminals) remove(t *terminal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.token != "" && r.byToken[t.token] == t {
		delete(r.byToken, t.token)
	}
	delete(r.byOwner[t.owner], t)
	if len(r.byOwner[t.owner]) == 0 {
		delete(r.byOwner, t.owner)
	}
}

// lookup finds the terminal a resume token names, if it belongs to this
// browser session and user.
func (r *terminals) lookup(token, owner, user string) (*terminal, error) {
	if token == "" || len(token) > 128 {
		return nil, errTerminalGone
	}
	r.mu.Lock()
	t := r.byToken[hashID(token)]
	r.mu.Unlock()
	if t == nil {
		return nil, errTerminalGone
	}
	if t.owner != owner || t.user != user {
		return nil, errors.New("this terminal belongs to another browser session")
	}
	return t, nil
}

// endOwner ends every terminal of a browser session (sign-out, or an
// identity that no longer holds).
func (r *terminals) endOwner(owner, reason string) {
	r.mu.Lock()
	var list []*terminal
	for t := range r.byOwner[owner] {
		list = append(list, t)
	}
	r.mu.Unlock()
	for _, t := range list {
		t.abort(reason)
	}
}

// terminal is one web terminal's SSH session and the output its browser
// has not acknowledged.
type terminal struct {
	reg         *terminals
	owner, user string
	input       bool
	// node and login name the session (for the audit of a resume).
	node, login string
	// away is when its last socket went (zero: one is attached).
	away   time.Time
	client *ssh.Client
	sess   *ssh.Session
	stdin  io.Writer

	// token is the SHA-256 of the current resume token (guarded by reg.mu).
	token string

	mu   sync.Mutex
	cond *sync.Cond
	out  ring
	att  *attachment
	// sending: a write to att's socket is in progress (by the socket's
	// sender, or by Write itself when att had everything before).
	sending bool
	// timer ends the terminal when no socket is attached for reg.grace.
	timer *time.Timer
	// ended: the session is over (no more output). reason and code are
	// what the page is told once it has the rest of the output.
	ended  bool
	reason string
	code   websocket.StatusCode
	// aborted: stop now, without waiting for the output to be read.
	aborted bool
	done    bool
}

// attachment is one socket showing a terminal.
type attachment struct {
	ws     *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	// sent is the offset of the next output byte to send.
	sent int64
}

func newTerminal(reg *terminals, owner, user string, input bool) *terminal {
	t := &terminal{reg: reg, owner: owner, user: user, input: input}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// Write takes the session's output (stdout and stderr). It waits while
// the window of unacknowledged output is full.
func (t *terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for len(p) > 0 {
		if t.aborted {
			return n, io.ErrClosedPipe
		}
		k := t.out.write(p)
		if k == 0 {
			t.cond.Wait()
			continue
		}
		// A page that has everything else gets a little output (a
		// keystroke's echo) at once, from here: it waits for no other
		// goroutine. More output goes through the sender, which sends
		// what has gathered in one message.
		if att := t.att; att != nil && k <= directMax && !t.sending && att.sent == t.out.end-int64(k) && att.ctx.Err() == nil {
			att.sent += int64(k)
			t.sending = true
			t.mu.Unlock()
			err := att.ws.Write(att.ctx, websocket.MessageBinary, p[:k])
			t.mu.Lock()
			t.sending = false
			if err != nil {
				att.cancel()
			}
		}
		n += k
		p = p[k:]
		t.cond.Broadcast()
	}
	return n, nil
}

// attach makes att the terminal's one socket, from output offset from,
// closing the previous one. It returns the new resume token.
func (t *terminal) attach(att *attachment, from int64) (string, error) {
	t.mu.Lock()
	if t.aborted || t.done {
		t.mu.Unlock()
		return "", errTerminalGone
	}
	if from < t.out.start || from > t.out.end {
		t.mu.Unlock()
		return "", errors.New("cannot resume: the page's output offset does not match the terminal's")
	}
	// Output before from is the page's already.
	t.out.ack(from)
	if old := t.att; old != nil {
		// The previous socket is told (its sender sees it is no longer
		// the terminal's and closes it with statusTakenOver), and cut
		// if it does not close soon (a dead connection).
		time.AfterFunc(5*time.Second, old.cancel)
	}
	t.att = att
	att.sent = from
	t.away = time.Time{}
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.cond.Broadcast()
	t.mu.Unlock()
	tok := t.reg.rotate(t)
	if tok == "" {
		return "", errTerminalGone
	}
	return tok, nil
}

// detach lets go of att; if it was the terminal's socket, the terminal
// waits reg.grace for another.
func (t *terminal) detach(att *attachment) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.att != att {
		return
	}
	t.att = nil
	t.away = time.Now()
	if t.done || t.aborted {
		return
	}
	t.timer = time.AfterFunc(t.reg.grace, func() {
		t.mu.Lock()
		idle := t.att == nil
		t.mu.Unlock()
		if idle {
			t.abort("the page was away longer than " + t.reg.grace.String())
		}
	})
}

// awayFor is how long the terminal has had no socket (0: it has one).
func (t *terminal) awayFor() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.away.IsZero() {
		return 0
	}
	return time.Since(t.away)
}

// ack records that the page has the output up to off.
func (t *terminal) ack(att *attachment, off int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.att == att && off <= att.sent {
		t.out.ack(off)
		t.cond.Broadcast()
	}
}

// next waits for output for att and returns a copy of it, or, once the
// session has ended and att has everything, final; stop: att is no
// longer the terminal's socket or ctx ended.
func (t *terminal) next(ctx context.Context, att *attachment, buf []byte) (chunk []byte, final, stop bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		switch {
		case t.att != att || ctx.Err() != nil:
			return nil, false, true
		case t.aborted:
			return nil, true, false
		case t.sending:
			// Write is sending to att: wait for it.
		case att.sent < t.out.end:
			n := t.out.read(att.sent, buf[:min(len(buf), termChunk)])
			att.sent += int64(n)
			t.sending = true
			return buf[:n], false, false
		case t.ended:
			return nil, true, false
		}
		t.cond.Wait()
	}
}

// end records that the session is over and why; the attached page gets
// the rest of the output, then the reason.
func (t *terminal) end(reason string, code websocket.StatusCode) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ended {
		t.ended, t.reason, t.code = true, reason, code
	}
	t.cond.Broadcast()
}

// abort ends the terminal now: the SSH session is closed, a page
// attached is told reason, and its token is revoked.
func (t *terminal) abort(reason string) {
	t.mu.Lock()
	if !t.aborted && !t.done {
		t.aborted = true
		if !t.ended {
			t.ended, t.reason, t.code = true, reason, websocket.StatusPolicyViolation
		}
	}
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.cond.Broadcast()
	t.mu.Unlock()
	t.finish()
}

func (t *terminal) isAborted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.aborted
}

// finish releases the terminal: its token, its registry entry and its
// SSH connection.
func (t *terminal) finish() {
	t.mu.Lock()
	t.done = true
	t.cond.Broadcast()
	t.mu.Unlock()
	t.reg.remove(t)
	if t.client != nil {
		t.client.Close()
	}
}

// serve shows the terminal on ws from output offset from until the
// socket goes, the terminal ends, or another socket takes over. attached,
// if set, is told the outcome of the attach (a resume's audit).
func (t *terminal) serve(ctx context.Context, ws *websocket.Conn, from int64, attached func(error)) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	att := &attachment{ws: ws, ctx: actx, cancel: cancel}
	tok, err := t.attach(att, from)
	if attached != nil {
		attached(err)
	}
	if err != nil {
		refuseSocket(ws, err.Error())
		return
	}
	defer t.detach(att)
	// Wake next when the socket's context ends.
	stopWake := context.AfterFunc(actx, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	defer stopWake()
	hello, _ := json.Marshal(serverMsg{Token: tok, Offset: from})
	if err := ws.Write(actx, websocket.MessageText, hello); err != nil {
		return
	}
	// Page → session: keys, sizes, acknowledgements.
	go func() {
		defer cancel()
		for {
			typ, b, err := ws.Read(actx)
			if err != nil {
				return
			}
			if typ == websocket.MessageText {
				var m clientMsg
				if json.Unmarshal(b, &m) != nil {
					continue
				}
				if m.Ack != nil {
					t.ack(att, *m.Ack)
				} else if t.input && m.Cols > 0 && m.Rows > 0 {
					_ = t.sess.WindowChange(clamp(m.Rows), clamp(m.Cols))
				}
				continue
			}
			if !t.input {
				continue // an observer's keys go nowhere
			}
			if _, err := t.stdin.Write(b); err != nil {
				return
			}
		}
	}()
	// A socket that stops answering is gone (a cut without a FIN).
	go func() {
		tick := time.NewTicker(pingInterval)
		defer tick.Stop()
		for {
			select {
			case <-actx.Done():
				return
			case <-tick.C:
				pctx, pcancel := context.WithTimeout(actx, pingTimeout)
				err := ws.Ping(pctx)
				pcancel()
				if err != nil {
					cancel()
					return
				}
			}
		}
	}()
	// Session → page.
	buf := make([]byte, termChunk)
	for {
		chunk, final, stop := t.next(actx, att, buf)
		if stop {
			if actx.Err() == nil {
				_ = ws.Close(statusTakenOver, "this terminal was resumed in another window")
			}
			return
		}
		if final {
			t.mu.Lock()
			reason, code := t.reason, t.code
			t.mu.Unlock()
			t.finish()
			if reason != "" && code != websocket.StatusNormalClosure {
				refuseSocket(ws, reason)
				return
			}
			_ = ws.Close(websocket.StatusNormalClosure, truncate(reason, 120))
			return
		}
		err := ws.Write(actx, websocket.MessageBinary, chunk)
		t.mu.Lock()
		t.sending = false
		t.cond.Broadcast()
		t.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// refuseSocket tells the page why, and closes the socket.
func refuseSocket(ws *websocket.Conn, msg string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, _ := json.Marshal(serverMsg{Reason: msg})
	_ = ws.Write(ctx, websocket.MessageText, b)
	_ = ws.Close(websocket.StatusPolicyViolation, truncate(msg, 120))
}

// isWebSocket reports whether r asks for a WebSocket.
func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// refuseUpgrade accepts a WebSocket only to tell the page why it is
// refused (a page cannot read the status of a refused upgrade) and close
// it: the page then stops reconnecting.
func (h *Handler) refuseUpgrade(w http.ResponseWriter, r *http.Request, msg string) {
	ws, err := websocket.Accept(w, r, nil) // refuses another Origin
	if err != nil {
		return
	}
	defer ws.CloseNow()
	refuseSocket(ws, msg)
}

// ring holds the output from offset start (acknowledged by the page) to
// end, at most termWindow bytes; it grows as needed.
type ring struct {
	b          []byte
	start, end int64
}

// write appends what fits of p and returns how much did.
func (r *ring) write(p []byte) int {
	held := int(r.end - r.start)
	if held+len(p) > len(r.b) && len(r.b) < termWindow {
		r.grow(min(termWindow, max(2*len(r.b), 64<<10, held+len(p))))
	}
	n := min(len(p), len(r.b)-held)
	for k := 0; k < n; {
		i := int(r.end % int64(len(r.b)))
		c := copy(r.b[i:], p[k:n])
		k += c
		r.end += int64(c)
	}
	return n
}

func (r *ring) grow(size int) {
	nb := make([]byte, size)
	held := int(r.end - r.start)
	if held > 0 {
		r.read(r.start, nb[:held])
	}
	// Re-lay the held bytes so that offset o is at o % size.
	moved := make([]byte, size)
	for k := 0; k < held; {
		i := int((r.start + int64(k)) % int64(size))
		c := copy(moved[i:], nb[k:held])
		k += c
	}
	r.b = moved
}

// read copies the output from off into p; off must be in [start, end].
func (r *ring) read(off int64, p []byte) int {
	n := min(len(p), int(r.end-off))
	for k := 0; k < n; {
		i := int((off + int64(k)) % int64(len(r.b)))
		c := copy(p[k:n], r.b[i:])
		k += c
	}
	return n
}

// ack drops the output before off.
func (r *ring) ack(off int64) {
	if off > r.start && off <= r.end {
		r.start = off
	}
}

// sessionEnd is what the page is told when the session ends: the exit, or
// (cut without an exit status) why the identity no longer holds.
func (h *Handler) sessionEnd(caller auth.Caller, id Identity, via, ip string, err error) (string, websocket.StatusCode) {
	var exit *ssh.ExitError
	if err == nil || errors.As(err, &exit) {
		return "session ended", websocket.StatusNormalClosure
	}
	cctx, ccancel := context.WithTimeout(WithIdentity(context.Background(), id), 5*time.Second)
	defer ccancel()
	if _, cerr := h.auth.CurrentCaller(cctx, caller, via, ip); cerr != nil {
		return "session ended: " + h.message(cerr), websocket.StatusPolicyViolation
	}
	return "connection to the node lost", websocket.StatusNormalClosure
}
