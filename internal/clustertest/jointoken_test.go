//go:build integration

package clustertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/syncbuf"
)

// startShell runs script with sh in dir, as typed into a shell (on its
// standard input, not its command line), in a process group of its own
// that is killed when the test ends.
func startShell(t *testing.T, dir string, env []string, script string) *syncbuf.Buffer {
	t.Helper()
	var out syncbuf.Buffer
	cmd := exec.Command("sh", "-s")
	cmd.Stdin = strings.NewReader(script + "\n")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return &out
}

// commandLines returns the command line of every process on the machine.
func commandLines(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		if b, err := os.ReadFile(d); err == nil {
			out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// TestNodeJoinTokenOffTheCommandLine: tokens add prints a join command that
// keeps the token off the command line (a file; or the environment), and
// run as printed it joins the node while no process's command line shows
// the token.
func TestNodeJoinTokenOffTheCommandLine(t *testing.T) {
	c := New(t, Options{NoNode: true})
	admin := t.TempDir()
	env := func() []string {
		return []string{"PATH=" + filepath.Dir(WardenBinary) + ":" + os.Getenv("PATH"), "WARDEN_DATA_DIR=" + t.TempDir()}
	}
	r := c.Warden(admin, nil, "tokens", "add", "--type", "node")
	if r.Code != 0 {
		t.Fatalf("tokens add: %s", r)
	}
	token := regexp.MustCompile(`token ([0-9a-f]{64}) expires`).FindStringSubmatch(r.Stdout)
	m := regexp.MustCompile(`(?m)^  (\(umask 077; echo \S+ > join-token\))\n  (warden start .*)$`).FindStringSubmatch(r.Stdout)
	if token == nil || m == nil || strings.Contains(m[2], token[1]) || !strings.Contains(m[2], "--token-file join-token") {
		t.Fatalf("tokens add does not print a command that keeps the token off the command line:\n%s", r.Stdout)
	}
	out := startShell(t, t.TempDir(), env(), m[1]+"\n"+m[2]+" --name viafile")
	waitNode(t, c, "viafile", out)
	for _, cl := range commandLines(t) {
		if strings.Contains(cl, token[1]) {
			t.Fatalf("a command line shows the join token: %s", cl)
		}
	}

	// The environment instead of the file.
	r = c.Warden(admin, nil, "tokens", "add", "--type", "node")
	token = regexp.MustCompile(`token ([0-9a-f]{64}) expires`).FindStringSubmatch(r.Stdout)
	start := regexp.MustCompile(`(?m)^  (warden start .*)$`).FindStringSubmatch(r.Stdout)
	if token == nil || start == nil {
		t.Fatalf("tokens add: %s", r)
	}
	script := strings.Replace(start[1], " --token-file join-token", "", 1) + " --name viaenv"
	out = startShell(t, t.TempDir(), append(env(), "WARDEN_TOKEN="+token[1]), script)
	waitNode(t, c, "viaenv", out)
	for _, cl := range commandLines(t) {
		if strings.Contains(cl, token[1]) {
			t.Fatalf("a command line shows the join token: %s", cl)
		}
	}
}

func waitNode(t *testing.T, c *Cluster, name string, out *syncbuf.Buffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		nodes, err := c.Admin.ListNodes(context.Background(), nil)
		if err == nil && slices.ContainsFunc(nodes, func(n auth.Node) bool { return n.Name == name }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not join (err %v); its output:\n%s", name, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
