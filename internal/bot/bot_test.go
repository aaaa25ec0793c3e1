package bot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecureDir: a bot's directories are 0700, a looser one is tightened,
// and a symlink (planted where the directory should be) is refused.
func TestSecureDir(t *testing.T) {
	base := t.TempDir()
	fresh := filepath.Join(base, "a", "out")
	if err := SecureDir(fresh); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(fresh); st.Mode().Perm() != 0o700 {
		t.Errorf("new directory is %v", st.Mode())
	}
	loose := filepath.Join(base, "loose")
	if err := os.Mkdir(loose, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o777)
	if err := SecureDir(loose); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(loose); st.Mode().Perm() != 0o700 {
		t.Errorf("loose directory left %v", st.Mode())
	}
	elsewhere := t.TempDir()
	link := filepath.Join(base, "link")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	if err := SecureDir(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("a symlink as the output directory: %v", err)
	}
}

// TestOutputKeyDoesNotFollowSymlinks: a key file that is a symlink (to a
// key of someone else's) is not read; a new key is made, and the atomic
// write replaces the link rather than writing through it.
func TestOutputKeyDoesNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(target, []byte("not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}
	if _, err := readOwnFile(filepath.Join(dir, "key")); err == nil {
		t.Error("readOwnFile followed a symlink")
	}
	keyPEM, pub, err := outputKey(dir)
	if err != nil || pub == nil || !strings.Contains(string(keyPEM), "PRIVATE KEY") {
		t.Fatalf("outputKey: %v", err)
	}
	if data, _ := os.ReadFile(target); string(data) != "not yours" {
		t.Errorf("the symlink's target changed: %q", data)
	}
}

func TestRenewAt(t *testing.T) {
	got := time.Unix(1000, 0)
	exp := got.Add(90 * time.Minute)
	if at := RenewAt(got, exp, 0); !at.Equal(got.Add(60 * time.Minute)) {
		t.Errorf("no jitter: %v", at.Sub(got))
	}
	if at := RenewAt(got, exp, 0.999); at.Before(got.Add(51*time.Minute)) || !at.Before(got.Add(60*time.Minute)) {
		t.Errorf("most jitter: %v", at.Sub(got))
	}
}
