//go:build integration

package recording

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"
	"github.com/warden-sh/warden/internal/patience"
)

// The real asciinema plays what the spool uploaded.

func TestAsciinemaCat(t *testing.T) {
	asciinema, err := exec.LookPath("asciinema")
	if err != nil {
		t.Fatalf("asciinema is required for this test: %v", err)
	}
	st := newStore(t)
	sp := newSpool(t, t.TempDir(), &directUploader{store: st, nodeID: "node-1"})
	r, err := sp.Start(testMeta("ca7"), testHeader(), true)
	if err != nil {
		t.Fatal(err)
	}
	writeSession(t, r, 5)
	r.Output([]byte("the end\r\n"))
	if _, _, err := r.Close(); err != nil {
		t.Fatal(err)
	}
	waitPending(t, sp, 0)
	b, _ := stored(t, st, "ca7")
	path := filepath.Join(t.TempDir(), "s.cast")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := patience.Context(t)
	// asciinema cat opens /dev/tty: give it a terminal.
	cmd := exec.CommandContext(ctx, asciinema, "cat", path)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "LANG=C.UTF-8")
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	out, _ := io.ReadAll(ptmx) // ends with EIO when the child exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("asciinema cat: %v: %s", err, out)
	}
	for _, want := range []string{"line 0004: héllo \"wörld\"", "the end"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("asciinema cat output lacks %q:\n%s", want, out)
		}
	}
}
