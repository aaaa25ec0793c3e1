//go:build integration

package bot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecureDirRefusesAnotherUsersDirectory: a directory another user owns
// (who could plant files in it) is refused. Needs root to chown.
func TestSecureDirRefusesAnotherUsersDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "theirs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatalf("chown (integration tests run as root): %v", err)
	}
	if err := SecureDir(dir); err == nil || !strings.Contains(err.Error(), "belongs to") {
		t.Errorf("another user's directory: %v", err)
	}
}
