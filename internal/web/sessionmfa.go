package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

// Per-session MFA in the web terminal (docs/session-mfa.md). When the
// node and login need a fresh MFA check for each session, the terminal's
// socket asks the page for it before connecting: the page shows a form
// for a TOTP code and a passkey button; the answer goes back over the
// same socket (never in a URL), and auth.Server.IssueSessionCert checks
// it (audited as mfa.verify, purpose session) and issues the one-minute
// certificate for that node and login, used once, which this terminal's
// connection then presents to the proxy and the node. The rules are the
// CLI's: the proxy and the node refuse the browser session's own
// certificate there.
const (
	// mfaAnswerTimeout bounds the wait for the person's answer.
	mfaAnswerTimeout = 3 * time.Minute
	// mfaAttempts is how many wrong answers one terminal may give.
	mfaAttempts = 3
)

// skipSessionMFA, set by tests only (export_test.go), opens terminals
// without the check: the proxy and the node must refuse them.
var skipSessionMFA bool

// mfaPrompt asks the page for a per-session MFA check.
type mfaPrompt struct {
	Node     string `json:"node"`
	Login    string `json:"login"`
	TOTP     bool   `json:"totp"`
	WebAuthn bool   `json:"webauthn"`
}

// sessionMFA makes the per-session check of this terminal over ws, if the
// node needs one for login: it returns the signer of the per-session
// certificate and the caller it names (its MFA device), or nil when no
// check is needed.
func (h *Handler) sessionMFA(ctx context.Context, ws *websocket.Conn, s *session, c auth.Caller, n auth.Node, login string, hello *clientMsg) (ssh.Signer, auth.Caller, error) {
	st, err := h.auth.SessionMFAStatus(ctx, c, wire.SessionMFAQuery{Nodes: []string{n.ID}, Login: login})
	if err != nil || !st.Required || skipSessionMFA {
		// An error is the proxy's and the node's to refuse with its reason.
		return nil, c, nil
	}
	if !st.TOTP && !st.WebAuthn {
		return nil, c, fmt.Errorf("%w: node %q requires an MFA check for each session, and you have no MFA device: add one on the Security page", auth.ErrAccessDenied, n.Name)
	}
	actx, cancel := context.WithTimeout(ctx, mfaAnswerTimeout)
	defer cancel()
	if err := writeMsg(actx, ws, serverMsg{MFA: &mfaPrompt{Node: n.Name, Login: login, TOTP: st.TOTP, WebAuthn: st.WebAuthn}}); err != nil {
		return nil, c, err
	}
	pub, err := ssh.NewPublicKey(s.key.Public())
	if err != nil {
		return nil, c, err
	}
	for tries := 0; ; {
		typ, b, err := ws.Read(actx)
		if err != nil {
			if actx.Err() != nil && ctx.Err() == nil {
				return nil, c, fmt.Errorf("%w: no answer to the MFA check for node %q in %s", auth.ErrAccessDenied, n.Name, mfaAnswerTimeout)
			}
			return nil, c, err
		}
		if typ != websocket.MessageText {
			continue // keys typed before the terminal opened go nowhere
		}
		var m clientMsg
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		switch {
		case m.MFABegin:
			ch, err := h.auth.BeginMFAChallenge(actx, c)
			if err != nil {
				return nil, c, err
			}
			if err := writeMsg(actx, ws, serverMsg{Challenge: ch}); err != nil {
				return nil, c, err
			}
			continue
		case m.OTP == "" && len(m.WebAuthn) == 0:
			if m.Cols > 0 && m.Rows > 0 {
				hello.Cols, hello.Rows = m.Cols, m.Rows
			}
			continue
		}
		answer := wire.MFAResponse{OTP: strings.TrimSpace(m.OTP), ChallengeID: m.ChallengeID, WebAuthn: m.WebAuthn}
		sc, err := h.auth.IssueSessionCert(actx, c, wire.SessionCertRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub)),
			Nodes: []string{n.ID}, Login: login, MFA: answer})
		if err != nil {
			tries++
			if tries >= mfaAttempts || !retryableMFA(err) {
				return nil, c, fmt.Errorf("MFA check for node %q: %w", n.Name, err)
			}
			if err := writeMsg(actx, ws, serverMsg{MFAError: h.message(err)}); err != nil {
				return nil, c, err
			}
			continue
		}
		cert, err := parseCert(sc.SSHCert)
		if err != nil {
			return nil, c, err
		}
		key, err := ssh.NewSignerFromKey(s.key)
		if err != nil {
			return nil, c, err
		}
		signer, err := ssh.NewCertSigner(cert, key)
		if err != nil {
			return nil, c, err
		}
		// The terminal's identity is now the per-session certificate's:
		// a lock on the device that answered ends it, with its message.
		c.MFADevice = sc.Device
		return signer, c, nil
	}
}

// retryableMFA tells a wrong answer (another may be right) from a refusal
// that another answer does not change (a lock, a role, the rate limit).
func retryableMFA(err error) bool {
	return errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrBadRequest)
}

func parseCert(text string) (*ssh.Certificate, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		return nil, err
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, errors.New("not an SSH certificate")
	}
	return cert, nil
}

func writeMsg(ctx context.Context, ws *websocket.Conn, m serverMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return ws.Write(ctx, websocket.MessageText, b)
}
