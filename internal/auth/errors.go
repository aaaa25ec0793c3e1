package auth

import (
	"errors"
	"fmt"

	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/wire"
)

// Sentinel errors; the api package maps them to HTTP status codes.
var (
	// ErrUnauthenticated means the credentials were wrong or missing. Its
	// message is deliberately vague; the audit log has the reason.
	ErrUnauthenticated = wire.ErrUnauthenticated
	// ErrBadRequest wraps invalid input.
	ErrBadRequest = wire.ErrBadRequest
	// ErrAccessDenied means the caller is authenticated but not allowed.
	ErrAccessDenied = wire.ErrAccessDenied
	// ErrThrottled means too many failed attempts came from the caller's
	// address: it is an *identity.ThrottledError with the wait.
	ErrThrottled = identity.ErrThrottled
	// ErrConflict means the request conflicts with the state of what it
	// names (a complete recording cannot grow).
	ErrConflict = errors.New("conflict")
)

// kindError is an error whose message is err's, that also matches kind
// (errors.Is): a sentinel for the status code without changing the text.
type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }

// withKind marks err as kind.
func withKind(err, kind error) error { return kindError{err: err, kind: kind} }

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

func denied(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrAccessDenied, fmt.Sprintf(format, args...))
}
