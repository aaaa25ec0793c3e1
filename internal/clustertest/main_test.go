//go:build integration

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
	dir, err := os.MkdirTemp("", "warden-bin-")
	if err != nil {
		panic(err)
	}
	if err := BuildWarden(dir); err != nil {
		os.RemoveAll(dir)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
