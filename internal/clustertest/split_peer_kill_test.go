//go:build integration

package clustertest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/kubetest"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

// TestSplitProxyPeeringKilledProxy: one auth and three proxies running
// apart (A1, A2, B), each a process on a host of its own, with peering on.
// Node node-m has a tunnel to both A2 and A1 (two node processes on two
// hosts with the one node identity: a node reachable through two proxies;
// A1's tunnel is the newer, so proxy B routes through A1 first); node-x
// has its tunnel to A2. A user at B reaches node-m through A1. Proxy A1 is
// killed with SIGKILL (no clean-up: its record stays current for up to its
// TTL): a new `ssh` through B still reaches node-m, through A2 (B's dial to
// A1 fails and is tried again through the other proxy holding the node's
// tunnel), and the live sessions through A2 (user → B → A2 → node-x, user
// → A2 → node-m) go on.
func TestSplitProxyPeeringKilledProxy(t *testing.T) {
	splitPeeringLoseProxy(t, "killed", func(p *splitProxyProc) {
		if err := p.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.proc.done
	})
}

// TestSplitProxyPeeringCutProxy is TestSplitProxyPeeringKilledProxy with
// A1's network cut instead (its link down: it runs on, unreachable, its
// record current at B until it expires): B's dial to A1 fails (no route)
// and is tried again through A2.
func TestSplitProxyPeeringCutProxy(t *testing.T) {
	splitPeeringLoseProxy(t, "cut off", func(p *splitProxyProc) {
		if r := Run(t, nil, "ip", "-n", p.host.NS, "link", "set", "eth0", "down"); r.Code != 0 {
			t.Fatalf("cut proxy A1's link: %s", r)
		}
	})
}

// splitPeeringLoseProxy is the test of TestSplitProxyPeeringKilledProxy,
// losing A1 by lose (what describes it).
func splitPeeringLoseProxy(t *testing.T, what string, lose func(*splitProxyProc)) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	s := newSplitCluster(t)
	authA := s.StartAuth("auth-a")
	proxyA1 := s.StartPeeringProxy("proxy-a1", authA, authA)
	proxyA2 := s.StartPeeringProxy("proxy-a2", authA, authA)
	proxyB := s.StartPeeringProxy("proxy-b", authA, authA)
	s.StartNode("node-x", authA, proxyA2)
	s.StartNode("node-m1", authA, proxyA2)
	// The same identity on a second host, its tunnel to A1. The node's name
	// is the one it joined with (node-m1).
	m2 := s.lab.Host("node-m2")
	m2Dir := filepath.Join(s.dir, "node-m2")
	if r := Run(t, nil, "cp", "-a", filepath.Join(s.dir, "node-m1"), m2Dir); r.Code != 0 {
		t.Fatalf("copy node-m1's data dir: %s", r)
	}
	m2Proc := m2.Start(t, WardenBinary, "start", "--services", "node", "--proxy", proxyA1.Addr(), "--name", "node-m1",
		"--token-file", s.token(authA, wire.TokenTypeNode), "--ca-pin", s.pin, "--data-dir", m2Dir)
	m2Proc.waitOutput(t, "tunnel to proxy up")
	if strings.Contains(m2Proc.out.String(), "joined cluster") {
		t.Fatalf("the second node-m1 process joined anew instead of using the copied identity:\n%s", m2Proc.out.String())
	}

	netns := func(hostName string) string {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/run/netns", "w"+s.lab.tag+"-"+hostName), &st); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("net:[%d]", st.Ino)
	}
	m1NS, m2NS := netns("node-m1"), netns(m2.Name)
	if m1NS == m2NS {
		t.Fatalf("node-m1's two hosts share a network namespace (%s)", m1NS)
	}
	u := s.AddUser(authA, "killuser", []string{"access"}, []string{osLogin})
	cfgB := s.Login(u, proxyB)
	cfgA2 := s.Login(u, proxyA2)
	whereIs := func(cfg string) Result {
		return Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@node-m1", "readlink", "/proc/self/ns/net")...)
	}
	testkit.WaitFor(t, "ssh through proxy B to reach node-m1 through A1 (its newest tunnel)", func() bool {
		r := whereIs(cfgB)
		return r.Code == 0 && strings.TrimSpace(r.Stdout) == m2NS
	})

	// Live sessions through the proxy that stays: each echoes its input.
	const echo = "echo started; exec cat"
	liveX, err := startLive(t, sshArgs(cfgB, osLogin+"@node-x", echo))
	if err != nil {
		t.Fatalf("session user → B → A2 → node-x: %v", err)
	}
	liveM, err := startLive(t, sshArgs(cfgA2, osLogin+"@node-m1", echo))
	if err != nil {
		t.Fatalf("session user → A2 → node-m1: %v", err)
	}

	bOut := len(proxyB.proc.out.String())
	start := time.Now()
	lose(proxyA1)
	// Right away: A1's record is still current at B (it outlives A1 by up
	// to its TTL), and A1 holds node-m1's newest tunnel.
	r := whereIs(cfgB)
	took := time.Since(start)
	if r.Code != 0 {
		t.Fatalf("a new ssh through B after A1 was %s: %s", what, r)
	}
	if got := strings.TrimSpace(r.Stdout); got != m1NS {
		t.Fatalf("the ssh after the kill reached %s, not node-m1 behind A2 (%s)", got, m1NS)
	}
	if logB := proxyB.proc.out.String()[bOut:]; !strings.Contains(logB, "peer unreachable; trying the node elsewhere") {
		t.Fatalf("proxy B did not dial through A1 first and retry (%s after A1 was %s; A1's record may have expired first):\n%s", took, what, logB)
	}
	t.Logf("a new ssh through B reached node-m1 through A2 %s after A1 was %s (B's dial to A1 failed, then was tried again)", took.Round(time.Millisecond), what)

	// The sessions through A2 go on: each still echoes.
	for name, p := range map[string]*bgProcess{"user → B → A2 → node-x": liveX, "user → A2 → node-m1": liveM} {
		msg := "still-here-" + strings.NewReplacer(" ", "", "→", "-").Replace(name)
		if _, err := fmt.Fprintln(p.stdin, msg); err != nil {
			t.Fatalf("session %s: %v", name, err)
		}
		testkit.WaitFor(t, "session "+name+" to echo after A1 was "+what, func() bool {
			select {
			case code := <-p.done:
				t.Fatalf("session %s ended (%d) after A1 was %s: %s %s", name, code, what, p.out.String(), p.err.String())
			default:
			}
			return strings.Contains(p.out.String(), msg)
		})
	}
	// And later dials (A1's record gone or not) keep going through A2.
	for i := 0; i < 3; i++ {
		if r := whereIs(cfgB); r.Code != 0 || strings.TrimSpace(r.Stdout) != m1NS {
			t.Fatalf("ssh %d through B after the kill: %s", i, r)
		}
	}
}

// TestSplitProxyPeeringKubeKilledProxy is TestSplitProxyPeeringKilledProxy
// for Kubernetes: a kube agent (the real warden binary in front of a real
// kube-apiserver) connected to proxies A2 and A1 (two agent processes with
// the one identity, A1's the newer, and B forwarding through A1), the
// user's kubectl at proxy B. A1 is killed with SIGKILL: the user's
// request through B right after the kill succeeds, B's forward of it to
// A1 refused and the request sent through A2 instead (the test fails
// with that retry taken out).
func TestSplitProxyPeeringKubeKilledProxy(t *testing.T) {
	kc := kubetest.Start(t)
	s := newSplitCluster(t)
	authA := s.StartAuth("auth-a")
	proxyA1 := s.StartPeeringProxy("proxy-a1", authA, authA)
	proxyA2 := s.StartPeeringProxy("proxy-a2", authA, authA)
	proxyB := s.StartPeeringProxy("proxy-b", authA, authA)
	s.apply(authA, "apply roles", splitKubeRoles)
	kc.Must(t, "", "create", "role", "cm-reader", "--verb=get,list,watch", "--resource=configmaps", "-n", "default")
	kc.Must(t, "", "create", "rolebinding", "viewers", "--role=cm-reader", "--group=viewers", "-n", "default")
	kc.Must(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm1, namespace: default}\ndata: {a: b}\n", "apply", "-f", "-")

	dir := t.TempDir()
	startAgent := func(name string, p *splitProxyProc) *bgProcess {
		a := startBackground(t, WardenBinary, "start", "--data-dir", filepath.Join(dir, name), "--services", "kube",
			"--proxy", p.Addr(), "--token-file", s.token(authA, wire.TokenTypeKube), "--ca-pin", s.pin,
			"--name", "kagent", "--kube-cluster", "test-k8s", "--kubeconfig", kc.AgentKubeconfig, "--labels", "env=dev")
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("kube agent %s output:\n%s%s", name, a.out.String(), a.err.String())
			}
		})
		testkit.WaitFor(t, "kube agent "+name+"'s tunnel", func() bool {
			return strings.Contains(a.out.String()+a.err.String(), "tunnel to proxy up")
		})
		return a
	}
	startAgent("kagent2", proxyA2)
	if r := Run(t, nil, "cp", "-a", filepath.Join(dir, "kagent2"), filepath.Join(dir, "kagent1")); r.Code != 0 {
		t.Fatalf("copy the agent's data dir: %s", r)
	}
	a1 := startAgent("kagent1", proxyA1)
	if strings.Contains(a1.out.String()+a1.err.String(), "joined cluster") {
		t.Fatal("the second agent process joined anew instead of using the copied identity")
	}

	u := s.AddUser(authA, "kubekill", []string{"cm-viewer"}, []string{osLogin})
	home := filepath.Dir(s.Login(u, proxyB))
	kubeconfig := filepath.Join(home, "test-k8s.kubeconfig")
	if r := Run(t, nil, WardenBinary, "--home", home, "kube", "login", "test-k8s", "--kubeconfig", kubeconfig, "--binary", WardenBinary); r.Code != 0 {
		t.Fatalf("kube login through proxy B: %s", r)
	}
	// Single requests only (kubectl get --raw): kubectl get's discovery
	// requests may still be served at B after kubectl has exited, and one
	// reaching A1 after the kill would mark it unreachable before the
	// request the test makes.
	get := func() Result {
		return kubectl(t, kubeconfig, "get", "--raw", "/kube/test-k8s/api/v1/namespaces/default/configmaps")
	}
	testkit.WaitFor(t, "kubectl through proxy B to reach the cluster", func() bool {
		r := get()
		return r.Code == 0 && strings.Contains(r.Stdout, `"name":"cm1"`)
	})
	// B forwards through A1 (the newest key) before the kill: its
	// kube.request names A1 in via_proxy.
	a1ID := regexp.MustCompile(`proxy_id=([0-9a-f-]+)`).FindStringSubmatch(proxyA1.proc.out.String())
	if a1ID == nil {
		t.Fatalf("proxy A1's id is not in its log:\n%s", proxyA1.proc.out.String())
	}
	testkit.WaitFor(t, "proxy B to forward through A1", func() bool {
		if r := get(); r.Code != 0 {
			return false
		}
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.KubeRequest, User: "kubekill", Limit: 1000})
		if err != nil || len(evs) == 0 {
			return false
		}
		// Once B has A1's key (the newest), it forwards through A1.
		for _, ev := range evs {
			if ev.Fields["via_proxy"] == a1ID[1] {
				return true
			}
		}
		return false
	})

	// The request after the kill is the first B gets, so that it is the
	// one B sends to A1 first and retries: not kubectl, whose dispatcher
	// asks B for /version before the request (that request would find
	// A1 dead and mark it, and the test's request would go to A2 with no
	// retry), but the user's kube credentials in one HTTP request.
	hc := kubeUserClient(t, home)
	bOut := len(proxyB.proc.out.String())
	start := time.Now()
	if err := proxyA1.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-proxyA1.proc.done
	resp, err := hc.Get("https://" + proxyB.Addr() + "/kube/test-k8s/api/v1/namespaces/default/configmaps")
	if err != nil {
		t.Fatalf("the request through B after A1 was killed: %v", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"name":"cm1"`) {
		t.Fatalf("the request through B after A1 was killed: %s\n%s", resp.Status, body)
	}
	logB := proxyB.proc.out.String()[bOut:]
	if n := strings.Count(logB, "peer unreachable; trying the kubernetes cluster elsewhere"); n != 1 {
		t.Fatalf("proxy B tried A1 %d times, want once, then A2 (%s after the kill; A1's record may have expired first):\n%s", n, took, logB)
	}
	t.Logf("a request through B reached the cluster through A2 %s after A1 was killed (B's forward to A1 refused, A2 tried next)", took.Round(time.Millisecond))
}
