package sshclient

import (
	"os"
	"testing"

	"github.com/warden-sh/warden/internal/patience"
)

// Every client the tests open is closed, so no keepalive, session or SFTP
// goroutine may outlive them.
func TestMain(m *testing.M) {
	os.Exit(patience.LeakCheck(m.Run()))
}
