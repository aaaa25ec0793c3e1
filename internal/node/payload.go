package node

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// Limits on client-supplied request data. x/crypto/ssh already caps packets
// at 256 KiB; these keep per-session state small and predictable.
const (
	maxEnvVars       = 32
	maxEnvNameLen    = 64
	maxEnvValueLen   = 4096
	maxCommandLen    = 64 << 10
	maxTermLen       = 64
	maxTermModesLen  = 4096
	maxWindowDim     = 10000
	maxSubsystemLen  = 64
	maxForwardHost   = 255
	maxSignalNameLen = 16
)

// ptyRequest is the "pty-req" payload (RFC 4254 6.2).
type ptyRequest struct {
	Term     string
	Columns  uint32
	Rows     uint32
	WidthPx  uint32
	HeightPx uint32
	Modes    string
}

// windowChange is the "window-change" payload (RFC 4254 6.7).
type windowChange struct {
	Columns  uint32
	Rows     uint32
	WidthPx  uint32
	HeightPx uint32
}

// envRequest is the "env" payload (RFC 4254 6.4).
type envRequest struct {
	Name  string
	Value string
}

// execRequest is the "exec" payload (RFC 4254 6.5).
type execRequest struct {
	Command string
}

// subsystemRequest is the "subsystem" payload (RFC 4254 6.5).
type subsystemRequest struct {
	Name string
}

// signalRequest is the "signal" payload (RFC 4254 6.9).
type signalRequest struct {
	Signal string
}

// exitStatusMsg is the "exit-status" payload (RFC 4254 6.10).
type exitStatusMsg struct {
	Status uint32
}

// exitSignalMsg is the "exit-signal" payload (RFC 4254 6.10).
type exitSignalMsg struct {
	Signal     string
	CoreDumped bool
	Error      string
	Lang       string
}

// directTCPIP is the "direct-tcpip" channel payload (RFC 4254 7.2).
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// forwardedTCPIP is the "forwarded-tcpip" channel payload (RFC 4254 7.2).
type forwardedTCPIP struct {
	Addr       string
	Port       uint32
	OriginAddr string
	OriginPort uint32
}

// tcpipForward is the "tcpip-forward" and "cancel-tcpip-forward" global
// request payload (RFC 4254 7.1).
type tcpipForward struct {
	Addr string
	Port uint32
}

// tcpipForwardReply answers a "tcpip-forward" request that asked for port 0.
type tcpipForwardReply struct {
	Port uint32
}

var errBadPayload = errors.New("malformed request payload")

func parsePtyRequest(payload []byte) (ptyRequest, error) {
	var r ptyRequest
	if err := ssh.Unmarshal(payload, &r); err != nil {
		return r, fmt.Errorf("pty-req: %w", errBadPayload)
	}
	if len(r.Term) > maxTermLen || !printableASCII(r.Term) {
		return r, errors.New("pty-req: invalid TERM")
	}
	if len(r.Modes) > maxTermModesLen {
		return r, errors.New("pty-req: terminal modes too long")
	}
	r.Columns, r.Rows = clampDim(r.Columns), clampDim(r.Rows)
	r.WidthPx, r.HeightPx = clampPx(r.WidthPx), clampPx(r.HeightPx)
	return r, nil
}

func parseWindowChange(payload []byte) (windowChange, error) {
	var w windowChange
	if err := ssh.Unmarshal(payload, &w); err != nil {
		return w, fmt.Errorf("window-change: %w", errBadPayload)
	}
	w.Columns, w.Rows = clampDim(w.Columns), clampDim(w.Rows)
	w.WidthPx, w.HeightPx = clampPx(w.WidthPx), clampPx(w.HeightPx)
	return w, nil
}

func clampDim(v uint32) uint32 { return min(v, maxWindowDim) }

func clampPx(v uint32) uint32 { return min(v, 0xffff) }

// parseEnv decodes an "env" request and reports whether the variable may be
// passed to the user's process: only TERM, LANG and LC_* are accepted, like
// sshd's default AcceptEnv.
func parseEnv(payload []byte) (envRequest, error) {
	var e envRequest
	if err := ssh.Unmarshal(payload, &e); err != nil {
		return e, fmt.Errorf("env: %w", errBadPayload)
	}
	if err := checkEnv(e.Name, e.Value); err != nil {
		return e, err
	}
	return e, nil
}

func checkEnv(name, value string) error {
	if len(name) == 0 || len(name) > maxEnvNameLen || !isEnvName(name) {
		return errors.New("env: invalid variable name")
	}
	if name != "TERM" && name != "LANG" && !strings.HasPrefix(name, "LC_") {
		return fmt.Errorf("env: variable %q is not accepted", name)
	}
	if len(value) > maxEnvValueLen || strings.ContainsRune(value, 0) {
		return errors.New("env: invalid value")
	}
	return nil
}

func isEnvName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func parseExec(payload []byte) (string, error) {
	var e execRequest
	if err := ssh.Unmarshal(payload, &e); err != nil {
		return "", fmt.Errorf("exec: %w", errBadPayload)
	}
	if len(e.Command) > maxCommandLen {
		return "", errors.New("exec: command too long")
	}
	if strings.ContainsRune(e.Command, 0) {
		return "", errors.New("exec: command contains NUL")
	}
	return e.Command, nil
}

func parseSubsystem(payload []byte) (string, error) {
	var s subsystemRequest
	if err := ssh.Unmarshal(payload, &s); err != nil {
		return "", fmt.Errorf("subsystem: %w", errBadPayload)
	}
	if len(s.Name) > maxSubsystemLen {
		return "", errors.New("subsystem: name too long")
	}
	return s.Name, nil
}

// signals maps SSH signal names (RFC 4254 6.10, without "SIG") to signals.
var signals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT,
	"ALRM": syscall.SIGALRM,
	"FPE":  syscall.SIGFPE,
	"HUP":  syscall.SIGHUP,
	"ILL":  syscall.SIGILL,
	"INT":  syscall.SIGINT,
	"KILL": syscall.SIGKILL,
	"PIPE": syscall.SIGPIPE,
	"QUIT": syscall.SIGQUIT,
	"SEGV": syscall.SIGSEGV,
	"TERM": syscall.SIGTERM,
	"USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

func parseSignal(payload []byte) (syscall.Signal, error) {
	var s signalRequest
	if err := ssh.Unmarshal(payload, &s); err != nil {
		return 0, fmt.Errorf("signal: %w", errBadPayload)
	}
	if len(s.Signal) > maxSignalNameLen {
		return 0, errors.New("signal: name too long")
	}
	sig, ok := signals[strings.TrimPrefix(s.Signal, "SIG")]
	if !ok {
		return 0, fmt.Errorf("signal: unsupported signal %q", s.Signal)
	}
	return sig, nil
}

// signalName is the SSH name of sig for "exit-signal" (RFC 4254 6.10).
func signalName(sig syscall.Signal) string {
	for name, s := range signals {
		if s == sig {
			return name
		}
	}
	return "KILL" // the protocol has no name for other signals; closest meaning
}

func parseDirectTCPIP(payload []byte) (directTCPIP, error) {
	var d directTCPIP
	if err := ssh.Unmarshal(payload, &d); err != nil {
		return d, fmt.Errorf("direct-tcpip: %w", errBadPayload)
	}
	if d.Host == "" || len(d.Host) > maxForwardHost || !printableASCII(d.Host) {
		return d, errors.New("direct-tcpip: invalid host")
	}
	if d.Port == 0 || d.Port > 65535 {
		return d, errors.New("direct-tcpip: invalid port")
	}
	return d, nil
}

func parseTCPIPForward(payload []byte) (tcpipForward, error) {
	var f tcpipForward
	if err := ssh.Unmarshal(payload, &f); err != nil {
		return f, fmt.Errorf("tcpip-forward: %w", errBadPayload)
	}
	if len(f.Addr) > maxForwardHost || (f.Addr != "" && !printableASCII(f.Addr)) {
		return f, errors.New("tcpip-forward: invalid address")
	}
	if f.Port > 65535 {
		return f, errors.New("tcpip-forward: invalid port")
	}
	return f, nil
}
