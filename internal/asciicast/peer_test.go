//go:build integration

package asciicast

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/patience"
)

// asciinemaCat runs the real "asciinema cat FILE". asciinema opens
// /dev/tty, so it runs under script(1) to get a pseudo-terminal even in CI.
func asciinemaCat(t *testing.T, file string) (string, error) {
	t.Helper()
	for _, tool := range []string{"asciinema", "script"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: this test plays recordings with the real asciinema; install it with: apt-get install -y asciinema bsdutils (%v)", tool, err)
		}
	}
	cmd := exec.CommandContext(patience.Context(t), "script", "-q", "-e", "-c", "asciinema cat '"+strings.ReplaceAll(file, "'", `'\''`)+"'", "/dev/null")
	cmd.Env = append(os.Environ(), "TERM=xterm", "HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

func TestAsciinemaPlaysOurRecording(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "session.cast")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, testHeader(), t0)
	if err != nil {
		t.Fatal(err)
	}
	steps := []error{
		w.Output(at(0.1), []byte("\x1b[1;31mred alert\x1b[0m\r\n")),
		w.Input(at(0.5), []byte("ls\r")),
		w.Output(at(0.6), []byte("caf\xc3")),
		w.Output(at(0.7), []byte("\xa9 \"quoted\" \\ back\tslash\r\n")),
		w.Resize(at(1), 120, 40),
		w.Marker(at(1.5), "checkpoint"),
		w.Output(at(2), []byte("\x1b[32mgreen\x1b[0m \u2028sep done\r\n")),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	out, err := asciinemaCat(t, file)
	if err != nil {
		t.Fatalf("asciinema cat failed: %v\n%s", err, out)
	}
	for _, want := range []string{"\x1b[1;31mred alert\x1b[0m", "café \"quoted\" \\ back\tslash", "\x1b[32mgreen\x1b[0m", "sep done"} {
		if !strings.Contains(out, want) {
			t.Errorf("asciinema cat output lacks %q:\n%q", want, out)
		}
	}
	if strings.Contains(out, "ls\r") {
		t.Errorf("asciinema cat printed input events: %q", out)
	}
}

// TestAsciinemaRejectsGarbage shows the peer check above can fail: the
// same invocation reports an error for a file that is not a recording.
func TestAsciinemaRejectsGarbage(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "bad.cast")
	if err := os.WriteFile(file, []byte("not a recording\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := asciinemaCat(t, file); err == nil {
		t.Errorf("asciinema cat accepted garbage:\n%s", out)
	}
}
