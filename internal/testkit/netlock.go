package testkit

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Chromium aborts page loads, fetches and WebSockets with
// ERR_NETWORK_CHANGED when an interface of its network namespace comes or
// goes, and the network-namespace tests add and remove veth interfaces in
// the test's namespace. `go test ./...` runs packages at the same time, so
// the two take a lock shared by every test process of the machine: browser
// tests hold it shared while their Chromium runs (ShareNetwork), tests that
// change interfaces hold it alone (ChangeNetwork), until they end.

func networkLock(t testing.TB, how int) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "warden-test-network.lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("network lock: %v", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		t.Fatalf("network lock: %v", err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// ShareNetwork holds the machine's network lock shared until the test
// ends: no test changes the interfaces meanwhile. For tests that run a
// browser.
func ShareNetwork(t testing.TB) { networkLock(t, syscall.LOCK_SH) }

// ChangeNetwork holds the machine's network lock alone until the test
// ends: no browser test runs meanwhile. For tests that add or remove
// network interfaces in the test's namespace.
func ChangeNetwork(t testing.TB) { networkLock(t, syscall.LOCK_EX) }
