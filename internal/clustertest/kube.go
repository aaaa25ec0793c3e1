package clustertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/kubetest"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// KubeEnv is a Warden cluster with a kube agent (the real warden binary,
// `warden start --services kube`) in front of a real kube-apiserver
// (kubetest): cluster test-k8s (labels env=dev) with a kubelet stand-in
// (vk1) and a pod default/shell on it, and a cluster "dead" whose API
// server is down.
type KubeEnv struct {
	C    *Cluster
	KC   *kubetest.Cluster
	Name string
	t    testing.TB
}

// StartKube starts a KubeEnv with roles applied.
func StartKube(t testing.TB, roles string) *KubeEnv {
	t.Helper()
	return StartKubeOn(t, New(t, Options{NoNode: true}), roles)
}

// StartKubeOn is StartKube on cluster c: the kube agent connects to c's
// proxy.
func StartKubeOn(t testing.TB, c *Cluster, roles string) *KubeEnv {
	t.Helper()
	kc := kubetest.Start(t)
	c.ApplyRoles(roles)
	ctx := context.Background()
	tok, err := c.Admin.CreateToken(ctx, auth.CreateTokenRequest{Type: "kube", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ping, err := c.Admin.Ping(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "join-token")
	if err := os.WriteFile(tokFile, []byte(tok.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	agentCfg, err := os.ReadFile(kc.AgentKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// A second cluster whose API server is down: its agent answers 503
	// with the reason.
	dead := strings.Replace(string(agentCfg), kc.Server, "https://127.0.0.1:"+fmt.Sprint(testkit.FreePort(t)), 1)
	deadPath := filepath.Join(dir, "dead.kubeconfig")
	if err := os.WriteFile(deadPath, []byte(dead), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("kube:\n  clusters:\n    - {name: dead, kubeconfig: %s, labels: {env: dev}}\n", deadPath)
	cfgPath := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The agent as an admin runs it: flags for one cluster, the config
	// file for more.
	cmd := exec.Command(WardenBinary, "start", "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"),
		"--services", "kube", "--proxy", c.ProxyAddr(), "--token-file", tokFile, "--ca-pin", ping.TLSCAFingerprint,
		"--name", "kagent", "--kube-cluster", "test-k8s", "--kubeconfig", kc.AgentKubeconfig, "--labels", "env=dev")
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("kube agent output:\n%s", out.String())
		}
	})
	testkit.WaitFor(t, "the kube agent's clusters", func() bool {
		cl, err := c.Admin.ListKubeClusters(ctx)
		return err == nil && len(cl) == 2
	})
	// Something to see, and RBAC for the viewers group in default.
	kc.Must(t, "apiVersion: v1\nkind: Node\nmetadata: {name: kube-node-1}\n", "apply", "-f", "-")
	// (The aggregated "view" role stays empty without a controller manager.)
	kc.Must(t, "", "create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods,configmaps", "-n", "default")
	kc.Must(t, "", "create", "rolebinding", "viewers", "--role=pod-reader", "--group=viewers", "-n", "default")
	kc.Must(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm1, namespace: default}\ndata: {a: b}\n", "apply", "-f", "-")
	// A kubelet (the test stand-in: commands run as local processes) and
	// a pod on it, for exec and logs.
	kubelet := kc.StartKubelet(t, "vk1")
	kc.Must(t, kubelet.Pod("default", "shell"), "apply", "-f", "-")
	return &KubeEnv{C: c, KC: kc, Name: "test-k8s", t: t}
}

// KubeLogin writes a kubeconfig context for cluster into a kubeconfig of
// its own in the profile home and returns its path.
func (e *KubeEnv) KubeLogin(home, cluster string) string {
	e.t.Helper()
	kubeconfig := filepath.Join(home, cluster+".kubeconfig")
	if r := e.C.Warden(home, nil, "kube", "login", cluster, "--kubeconfig", kubeconfig, "--binary", WardenBinary); r.Code != 0 {
		e.t.Fatalf("kube login: %s", r)
	}
	return kubeconfig
}
