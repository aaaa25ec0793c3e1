// Package testkit holds what tests in several packages need alike: waiting
// for a condition (within the test's patience, see internal/patience), a
// free loopback port, and a real OpenSSH server to test against. It is
// imported by tests only.
package testkit

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/warden-sh/warden/internal/patience"
)

var errNotYet = errors.New("not yet")

// WaitFor polls cond until it holds (patience.Retry: from 1 ms to 100 ms
// between calls) and fails tb, saying what it waited for, once the test's
// patience runs out. A loaded machine makes the wait longer, never a
// failure. what names the condition ("the node to come online"); with args
// it is a format, formatted only on failure, so that a fmt.Stringer among
// args (a buffer of output) shows the state at that moment.
func WaitFor(tb testing.TB, what string, cond func() bool, args ...any) {
	tb.Helper()
	err := patience.Retry(tb, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
	if err == nil {
		return
	}
	if len(args) > 0 {
		what = fmt.Sprintf(what, args...)
	}
	tb.Fatalf("timed out waiting for %s", what)
}

// FreePort returns a loopback TCP port that was free a moment ago, for a
// server that must be told its port (sshd, a subprocess) instead of
// listening on port 0 itself.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
