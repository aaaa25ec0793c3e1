//go:build integration

package kubetest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The kubelet stand-in serves exec and logs for the real API server.
func TestKubeletExecAndLogs(t *testing.T) {
	c := Start(t)
	k := c.StartKubelet(t, "vk1")
	c.Must(t, k.Pod("default", "p1"), "apply", "-f", "-")
	for _, args := range [][]string{{"exec", "p1", "--", "echo", "hello"}, {"logs", "p1"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.AdminKubeconfig, "-v=6"}, args...)...)
		out, err := cmd.CombinedOutput()
		cancel()
		want := map[string]string{"exec": "hello", "logs": "p1 log line 2"}[args[0]]
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
