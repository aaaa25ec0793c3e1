//go:build integration

package clustertest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/kubetest"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

// TestSplitProxyKubeExecRecorded: `kubectl exec -it` through a proxy
// running apart from auth (processes apart, on PostgreSQL) is a session
// like one through auth's own proxy: listed live in `sessions ls`,
// watched with `warden join` through that proxy (the owner told), its
// recording written to auth in the kube agent's name, complete, verified
// and played back, with the roles' strict recording honoured; the agent,
// the real kube-apiserver and the kubelet stand-in run on the test's host.
func TestSplitProxyKubeExecRecorded(t *testing.T) {
	kc := kubetest.Start(t)
	kubelet := kc.StartKubelet(t, "vk1")
	kc.Must(t, kubelet.Pod("default", "shell"), "apply", "-f", "-")
	s := newSplitCluster(t)
	authA := s.StartAuth("auth-a")
	proxyA := s.StartProxy("proxy-a", authA, authA)
	roles := `kind: role
metadata: {name: kube-rec}
spec:
  options: {record_session: strict, record_input: true}
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: ["system:masters"]
---
kind: role
metadata: {name: kube-watch}
spec:
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: ["system:masters"]
    rules:
      - {resources: [session], verbs: [list]}
    join_sessions:
      - {roles: [kube-rec], modes: [observer]}
`
	s.apply(authA, "apply roles", roles)
	agent := startBackground(t, WardenBinary, "start", "--data-dir", filepath.Join(t.TempDir(), "kagent"), "--services", "kube",
		"--proxy", proxyA.Addr(), "--token-file", s.token(authA, wire.TokenTypeKube), "--ca-pin", s.pin,
		"--name", "kagent", "--kube-cluster", "test-k8s", "--kubeconfig", kc.AgentKubeconfig, "--labels", "env=dev")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube agent output:\n%s%s", agent.out.String(), agent.err.String())
		}
	})
	testkit.WaitFor(t, "auth to list the cluster behind the proxy", func() bool {
		cl, err := authA.admin.ListKubeClusters(context.Background())
		return err == nil && len(cl) == 1
	})
	u := s.AddUser(authA, "kexec", []string{"kube-rec"}, nil)
	home := filepath.Dir(s.Login(u, proxyA))
	kubeconfig := filepath.Join(home, "test-k8s.kubeconfig")
	if r := Run(t, nil, WardenBinary, "--home", home, "kube", "login", "test-k8s", "--kubeconfig", kubeconfig, "--binary", WardenBinary); r.Code != 0 {
		t.Fatalf("kube login: %s", r)
	}

	cmd, term, out := kubectlTTY(t, nil, kubeconfig, "exec", "-it", "shell", "-n", "default", "--", "sh")
	testkit.WaitFor(t, "the shell through the proxy running apart", func() bool {
		_, _ = term.Write([]byte("echo up-$((6*7))\n"))
		return strings.Contains(out.String(), "up-42")
	})
	id := liveKubeSessionFrom(t, func() Result { return s.adminCLI(authA, "sessions", "ls", "-o", "json") }, "kexec", "kube-exec")
	// Watched through the proxy running apart (warden join): the owner is
	// told, the observer sees what the shell prints.
	watcher := s.AddUser(authA, "kwatch", []string{"kube-watch"}, nil)
	whome := filepath.Dir(s.Login(watcher, proxyA))
	observer := startBackground(t, WardenBinary, "--home", whome, "join", id)
	testkit.WaitFor(t, "the join notice on the owner's terminal", func() bool {
		select {
		case code := <-observer.done:
			t.Fatalf("warden join ended (exit %d): %s%s", code, observer.out.String(), observer.err.String())
		default:
		}
		return strings.Contains(out.String(), "warden: kwatch joined this session as observer")
	})
	_, _ = term.Write([]byte("echo observed-$((6*7))\n"))
	testkit.WaitFor(t, "the observer's view", func() bool { return strings.Contains(observer.out.String(), "observed-42") })
	_, _ = term.Write([]byte("echo split-recorded-$((6*7)); exit\n"))
	waitExit(t, cmd, out)
	if !strings.Contains(out.String(), "split-recorded-42") {
		t.Fatalf("the command's output: %s", out.String())
	}

	testkit.WaitFor(t, "recording.complete of "+id, func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.RecordingComplete})
		return err == nil && len(evs) == 1
	})
	if r := s.adminCLI(authA, "recordings", "verify", id); r.Code != 0 {
		t.Fatalf("recordings verify: %s", r)
	}
	if r := s.adminCLI(authA, "play", id, "--speed", "1000"); r.Code != 0 || !strings.Contains(r.Stdout, "split-recorded-42") {
		t.Fatalf("play: %s", r)
	}
	if r := s.adminCLI(authA, "recordings", "search", "split-recorded"); r.Code != 0 || !strings.Contains(r.Stdout, id) {
		t.Fatalf("recordings search: %s", r)
	}
	// The session's events are the agent's, at auth.
	evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.SessionStart})
	if err != nil || len(evs) != 1 || evs[0].User != "kexec" {
		t.Fatalf("session.start: %+v %v", evs, err)
	}
}
