package sshclient

import (
	"testing"

	"go.uber.org/goleak"
)

// Every client the tests open is closed, so no keepalive, session or SFTP
// goroutine may outlive them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
