package clustertest

import (
	"os"
	"testing"

	"github.com/warden-sh/warden/internal/node"
)

func TestMain(m *testing.M) {
	// The node re-executes the test binary for its SFTP child.
	if node.MaybeRunChild() {
		return
	}
	os.Exit(m.Run())
}
