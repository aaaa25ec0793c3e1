//go:build integration

package clustertest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// TestStartIsReadyWhenThePortOpens: a script that waits for `warden
// start`'s port and then runs an admin command succeeds (the port opens
// only once the admin identity exists); /readyz answers 200 once every
// service runs. The start says where its data lives and makes an existing
// data directory that others could read private; an admin command without
// that data directory names the flag and the variable that give it.
func TestStartIsReadyWhenThePortOpens(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(data, 0o755) // whatever the umask
	addr := "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	var out syncbuf.Buffer
	cmd := exec.Command(WardenBinary, "start", "--data-dir", data, "--proxy-listen", addr, "--name", "ready1")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	// What a script does: wait for the port, then add a user at once.
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the port never opened: %v\n%s", err, out.String())
		}
		time.Sleep(time.Millisecond)
	}
	c := &Cluster{t: t, DataDir: data}
	if r := c.Warden(t.TempDir(), nil, "users", "add", "early", "--roles", "access"); r.Code != 0 {
		t.Fatalf("users add right after the port opened: %s", r)
	}
	// /readyz: 200 once every service runs (the node too).
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}, Timeout: 5 * time.Second}
	testkit.WaitFor(t, "200 from /readyz", func() bool {
		resp, err := hc.Get("https://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	testkit.WaitFor(t, "the start banner", func() bool { return strings.Contains(out.String(), "data directory:    "+data) })
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory mode %v (%v), want 0700", fi.Mode(), err)
	}
	if !strings.Contains(out.String(), "made it private") || !strings.Contains(out.String(), "mode_was=0755") {
		t.Fatalf("the start does not say it tightened the data directory:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "warden --data-dir "+data+" users add") {
		t.Fatalf("the banner's admin command lacks the data directory:\n%s", out.String())
	}
	// From a shell without the data directory.
	r := (&Cluster{t: t, DataDir: t.TempDir()}).Warden(t.TempDir(), nil, "users", "add", "late", "--roles", "access")
	if r.Code == 0 || !strings.Contains(r.Stderr, "--data-dir") || !strings.Contains(r.Stderr, "WARDEN_DATA_DIR") {
		t.Fatalf("users add without the data directory: %s", r)
	}
}
