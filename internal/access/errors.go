package access

import (
	"errors"
	"fmt"
)

// Sentinels that an *Error wraps, so the edge can map them to status codes:
// ErrInvalid to 400, ErrDenied to 403 and ErrConflict to 409. An ErrConflict
// error also matches ErrInvalid, for callers that only know the first two.
var (
	// ErrInvalid: the input is malformed or names something that does not
	// exist.
	ErrInvalid = errors.New("invalid access request")
	// ErrDenied: policy refuses the operation to this caller.
	ErrDenied = errors.New("access request denied by policy")
	// ErrConflict: the request's state does not allow the operation (it was
	// already resolved, expired, or already reviewed by this person).
	ErrConflict = errors.New("access request state conflict")
)

// Error is a user-facing error. Msg is short and safe to show to the
// requester or reviewer; Kind is one of ErrInvalid, ErrDenied, ErrConflict.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap exposes Kind (and ErrInvalid for conflicts) to errors.Is.
func (e *Error) Unwrap() []error {
	if e.Kind == ErrConflict {
		return []error{ErrConflict, ErrInvalid}
	}
	return []error{e.Kind}
}

func invalidf(format string, args ...any) error {
	return &Error{Kind: ErrInvalid, Msg: fmt.Sprintf(format, args...)}
}

func deniedf(format string, args ...any) error {
	return &Error{Kind: ErrDenied, Msg: fmt.Sprintf(format, args...)}
}

func conflictf(format string, args ...any) error {
	return &Error{Kind: ErrConflict, Msg: fmt.Sprintf(format, args...)}
}
