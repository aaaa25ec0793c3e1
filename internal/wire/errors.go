package wire

import "errors"

// Sentinel errors shared by auth (which returns them) and the API client
// (which returns them for the status codes the API maps them to), so a
// client tells them apart with errors.Is without importing auth.
var (
	// ErrUnauthenticated means the credentials were wrong or missing. Its
	// message is deliberately vague; the audit log has the reason.
	ErrUnauthenticated = errors.New("authentication failed")
	// ErrBadRequest wraps invalid input.
	ErrBadRequest = errors.New("bad request")
	// ErrAccessDenied means the caller is authenticated but not allowed.
	ErrAccessDenied = errors.New("access denied")
	// ErrUpstream means a service auth depends on, such as an SSO
	// connector's identity provider, did not answer (502, with the reason).
	ErrUpstream = errors.New("upstream unavailable")
)
