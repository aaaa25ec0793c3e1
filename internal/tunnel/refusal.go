package tunnel

import (
	"crypto/rand"
	"encoding/binary"
	"strings"

	"golang.org/x/crypto/ssh"
)

// maxRefusal bounds the reason in a refusal: OpenSSH prints at most 400
// bytes of it.
const maxRefusal = 400

// CodeSessionMFA tags a proxy's refusal that a per-session MFA check
// lifts: the node needs one for this session and the certificate carries
// none (policy.CheckSessionMFA). A Warden client that sees it makes the
// check and connects again once; anyone else reads the reason that
// follows the tag.
const CodeSessionMFA = "session-mfa-required"

// Tag marks a refusal's reason with a machine-readable code: "[CODE] reason".
func Tag(code, reason string) string { return "[" + code + "] " + reason }

// HasCode reports whether err (a refusal as the client got it: a dial
// reply, or the disconnect inside a channel, with what wraps them) carries
// the code.
func HasCode(err error, code string) bool {
	return err != nil && strings.Contains(err.Error(), "["+code+"] ")
}

// RefusalStream is what an SSH server that refuses a client at once sends:
// its version line, then, before any key exchange, SSH_MSG_DISCONNECT with
// the reason (RFC 4253 11.1: a client must process it at any time). OpenSSH
// prints "Received disconnect from ...: REASON" and exits. `warden proxy
// ssh` answers ssh with it when it cannot connect it to the node, rather
// than leave ssh to report only that its ProxyCommand gave it nothing.
func RefusalStream(reason string) []byte {
	if len(reason) > maxRefusal {
		reason = strings.ToValidUTF8(reason[:maxRefusal-3], "") + "..."
	}
	payload := ssh.Marshal(struct {
		Type        uint8
		Reason      uint32
		Description string
		Language    string
	}{Type: 1, Reason: 11 /* SSH_DISCONNECT_BY_APPLICATION */, Description: reason})
	// Unencrypted binary packet (RFC 4253 6): length, padding length,
	// payload, at least 4 bytes of padding, a multiple of 8 bytes in all.
	padding := 8 - (4+1+len(payload))%8
	if padding < 4 {
		padding += 8
	}
	out := append([]byte("SSH-2.0-Warden\r\n"), make([]byte, 5)...)
	binary.BigEndian.PutUint32(out[len(out)-5:], uint32(1+len(payload)+padding))
	out[len(out)-1] = byte(padding)
	out = append(out, payload...)
	pad := make([]byte, padding)
	_, _ = rand.Read(pad)
	return append(out, pad...)
}
