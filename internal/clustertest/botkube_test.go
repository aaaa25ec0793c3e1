//go:build integration

package clustertest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBotKubeconfig: `warden bot start --oneshot --dest DIR` also writes
// DIR/kubeconfig, which the real kubectl uses as it is against the real
// kube-apiserver through the proxy and kube agent, as the bot with its
// role's groups; a renewal changes the certificate, not the kubeconfig,
// and kubectl keeps working; a locked bot is refused.
func TestBotKubeconfig(t *testing.T) {
	e := startKubeEnv(t)
	c := e.c
	token, pin := addBot(t, c, "kci", "--roles", "kube-viewer", "--ttl", "10m")
	dest := filepath.Join(t.TempDir(), "out")
	storage := filepath.Join(t.TempDir(), "state")
	start := []string{"bot", "start", "--proxy", c.ProxyAddr(), "--dest", dest, "--storage", storage, "--oneshot"}
	if res := Run(t, nil, WardenBinary, append(start, "--ca-pin", pin, "--token-file", writeSecret(t, token))...); res.Code != 0 {
		t.Fatalf("bot start --oneshot: %s", res)
	}
	kubeconfig := filepath.Join(dest, "kubeconfig")
	for _, f := range []string{"kubeconfig", "tls.key"} {
		st, err := os.Lstat(filepath.Join(dest, f))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v", f, st, err)
		}
	}
	cfg := readFile(t, kubeconfig)
	// One context per cluster the role reaches (both have env=dev), the
	// first current; certificate files by path, no key inside.
	for _, want := range []string{"current-context: dead", "- name: test-k8s", "/kube/test-k8s", filepath.Join(dest, "tls.crt")} {
		if !strings.Contains(cfg, want) {
			t.Errorf("kubeconfig lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "PRIVATE KEY") || strings.Contains(cfg, "client-key-data") {
		t.Errorf("kubeconfig holds a key:\n%s", cfg)
	}

	get := func() Result {
		return kubectl(t, kubeconfig, "--context", e.name, "get", "pods", "-n", "default", "-o", "name")
	}
	if r := get(); r.Code != 0 || !strings.Contains(r.Stdout, "pod/shell") {
		t.Fatalf("kubectl get pods with the bot's kubeconfig: %s", r)
	}
	w := kubeWhoami(t, kubeconfig, "--context", e.name)
	if w.Status.UserInfo.Username != "bot-kci" || !contains(w.Status.UserInfo.Groups, "viewers") {
		t.Errorf("whoami: %+v", w.Status.UserInfo)
	}
	// The role allows pods in default only.
	if r := kubectl(t, kubeconfig, "--context", e.name, "get", "configmaps", "-n", "default"); r.Code == 0 || !strings.Contains(r.Stderr, "not allowed") {
		t.Errorf("kubectl get configmaps (not in the role): %s", r)
	}

	// Renewal (from the stored identity): a new certificate, the same
	// kubeconfig, kubectl still works.
	oldCert := readFile(t, filepath.Join(dest, "tls.crt"))
	if res := Run(t, nil, WardenBinary, start...); res.Code != 0 {
		t.Fatalf("bot renewal: %s", res)
	}
	if readFile(t, filepath.Join(dest, "tls.crt")) == oldCert {
		t.Errorf("renewal did not change tls.crt")
	}
	if readFile(t, kubeconfig) != cfg {
		t.Errorf("renewal rewrote the kubeconfig differently")
	}
	if r := get(); r.Code != 0 || !strings.Contains(r.Stdout, "pod/shell") {
		t.Fatalf("kubectl get pods after renewal: %s", r)
	}

	// Locked: kubectl with the (still unexpired) certificate is refused
	// with the lock's message.
	if res := c.Warden(t.TempDir(), nil, "lock", "--bot", "kci", "--message", "rotating CI"); res.Code != 0 {
		t.Fatalf("lock --bot: %s", res)
	}
	if r := get(); r.Code == 0 || !strings.Contains(r.Stderr, "rotating CI") {
		t.Errorf("kubectl as a locked bot: %s", r)
	}
}
