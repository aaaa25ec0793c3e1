package service

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/kubeagent"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/testkit"
)

// The kube path in one process, on the unit tier: auth, proxy and a kube
// agent whose "API server" records what reaches it (the integration tier,
// internal/clustertest/kube_test.go, runs the same against a real
// kube-apiserver with kubectl). What reaches the cluster is only the
// proxy's decision; a refusal never reaches it; a lock ends a live watch
// at once and refuses the next request.
func TestKubeThroughProxyAndAgent(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/exec") {
			// An upgrade, echoed back.
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			_, _ = io.Copy(conn, brw)
			return
		}
		if r.URL.Query().Get("watch") == "true" {
			w.Header().Set("Content-Type", "application/json")
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(w, "{\"type\":\"ADDED\",\"n\":%d}\n", i); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
		fmt.Fprintf(w, `{"kind":"PodList","user":%q}`, r.Header.Get("Impersonate-User"))
	}))
	defer upstream.Close()
	dir := t.TempDir()
	kubeconfig := writeAgentKubeconfig(t, dir, upstream.URL)
	cfg := &Config{ClusterName: "test", DataDir: filepath.Join(dir, "data"), Services: []string{Auth, Proxy, Kube},
		Proxy: ProxyConfig{Listen: "127.0.0.1:0", MetricsAddr: MetricsOff}}
	cfg.Kube.Clusters = append(cfg.Kube.Clusters, kubeClusterSettings("k1", kubeconfig))
	ctx := context.Background()
	p, err := Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := p.Auth()
	role := upsertKubeDevRole(t, a, `{kind: pods, namespace: default}, {kind: "pods/exec", namespace: default}`)
	hc := userClient(t, a, "alice", []string{"kube-dev"})
	testkit.WaitFor(t, "the kube agent's cluster", func() bool {
		cl, err := a.ListKubeClusters(ctx, auth.AdminCaller())
		return err == nil && len(cl) == 1
	})
	base := "https://" + p.ProxyAddr() + "/kube/"

	get := func(path string, h map[string]string) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	last := func() http.Header {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return nil
		}
		return seen[len(seen)-1]
	}

	code, body := get("k1/api/v1/namespaces/default/pods", map[string]string{
		"Impersonate-User": "admin", "Impersonate-Group": "system:masters", "Authorization": "Bearer stolen",
		"X-Warden-Kube-Identity": `{"cluster":"k1","user":"admin","groups":["system:masters"]}`})
	if code != http.StatusOK || !strings.Contains(body, `"user":"alice"`) {
		t.Fatalf("allowed request: %d %s", code, body)
	}
	h := last()
	if h.Get("Impersonate-User") != "alice" || strings.Join(h.Values("Impersonate-Group"), ",") != "developers" ||
		h.Get("Authorization") != "Bearer agent-secret" || h.Get("X-Warden-Kube-Identity") != "" {
		t.Fatalf("the API server saw %v", h)
	}

	mu.Lock()
	n := len(seen)
	mu.Unlock()
	for path, want := range map[string]string{
		"k1/api/v1/namespaces/kube-system/pods": `list pods in namespace kube-system is not allowed on kubernetes cluster \"k1\"`,
		"k1/api/v1/nodes":                       `list nodes is not allowed`,
		"k2/api/v1/namespaces/default/pods":     `kubernetes cluster \"k2\" is not connected or not allowed`,
	} {
		if code, body := get(path, nil); code != http.StatusForbidden || !strings.Contains(body, want) || !strings.Contains(body, `"kind":"Status"`) {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	mu.Lock()
	if len(seen) != n {
		t.Fatalf("refused requests reached the API server: %v", seen[n:])
	}
	mu.Unlock()

	// An exec stream in a protocol that is not one of Kubernetes' streaming
	// protocols could be neither recorded nor audited: refused (the real
	// kubectl's exec through Warden is tested in clustertest).
	func() {
		tr := hc.Transport.(*http.Transport)
		cfg := tr.TLSClientConfig.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		conn, err := tls.Dial("tcp", p.ProxyAddr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(conn, "GET /kube/k1/api/v1/namespaces/default/pods/p1/exec?command=sh HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusSwitchingProtocols || !strings.Contains(string(body), "is not one Warden can record") {
			t.Fatalf("an exec stream Warden cannot read: %s %s", resp.Status, body)
		}
	}()

	// Bodies are bounded.
	big, err := http.NewRequest("POST", base+"k1/api/v1/namespaces/default/pods", io.LimitReader(zeros{}, 9<<20))
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := hc.Do(big); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("9 MiB body: %s", resp.Status)
		}
	}

	// A live watch ends as soon as a lock matches its user.
	resp, err := hc.Get(base + "k1/api/v1/namespaces/default/pods?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	if _, err := lines.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "alice"}, Message: "go home"}); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := lines.ReadString('\n'); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case <-ended:
		// The lock's own hook ends it (measured: 60–120 ms); the bound only
		// tells that hook from the proxy's re-decision every 10 s, which
		// would end it too, and leaves a busy machine 5 s of slack.
		d := time.Since(start)
		t.Logf("the watch ended %s after the lock", d)
		if d > 5*time.Second {
			t.Fatalf("the watch ended %s after the lock: not by the lock's hook", d)
		}
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatal("the watch outlived the lock")
	}
	if code, body := get("k1/api/v1/namespaces/default/pods", nil); code != http.StatusForbidden || !strings.Contains(body, "go home") {
		t.Fatalf("after the lock: %d %s", code, body)
	}

	// A lock on the cluster (by its name, as a node's) refuses everyone.
	bob := userClient(t, a, "bob", []string{"kube-dev"})
	hc = bob
	if code, body := get("k1/api/v1/namespaces/default/pods", nil); code != http.StatusOK {
		t.Fatalf("bob: %d %s", code, body)
	}
	// An edited role ends live requests it no longer allows, at the next
	// re-decision (every 10 s).
	watch, err := hc.Get(base + "k1/api/v1/namespaces/default/pods?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Body.Close()
	wlines := bufio.NewReader(watch.Body)
	if _, err := wlines.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	narrowed := *role
	narrowed.Spec.Allow.KubernetesResources = []policy.KubernetesResource{{Kind: "configmaps"}}
	if err := a.UpsertRole(ctx, auth.AdminCaller(), &narrowed); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	// Without the re-decision the API server would keep the watch open
	// for half an hour or more: ending before the test's deadline is the
	// pass mark, how soon is a figure.
	wended := make(chan struct{})
	go func() {
		defer close(wended)
		for {
			if _, err := wlines.ReadString('\n'); err != nil {
				return
			}
		}
	}()
	select {
	case <-wended:
		t.Logf("the watch ended %s after the role was edited", time.Since(edited))
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatal("the watch outlived the role edit")
	}
	if err := a.UpsertRole(ctx, auth.AdminCaller(), role); err != nil {
		t.Fatal(err)
	}

	if _, err := a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{Node: "k1"}, Message: "k1 under maintenance"}); err != nil {
		t.Fatal(err)
	}
	if code, body := get("k1/api/v1/namespaces/default/pods", nil); code != http.StatusForbidden || !strings.Contains(body, "k1 under maintenance") {
		t.Fatalf("bob after the cluster lock: %d %s", code, body)
	}
}

// userClient signs up user with roles and returns an HTTPS client with
// the user's certificate.
func userClient(t testing.TB, a *auth.Server, user string, roles []string) *http.Client {
	t.Helper()
	ctx := context.Background()
	inv, err := a.CreateUser(ctx, auth.AdminCaller(), auth.CreateUserRequest{Name: user, Roles: roles})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := a.BeginSignup(ctx, auth.SignupRequest{Token: inv.Token})
	if err != nil {
		t.Fatal(err)
	}
	otp, err := identity.TOTPCode(ch.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.CompleteSignup(ctx, auth.SignupRequest{Token: inv.Token, Password: "a good long password", OTP: otp,
		PublicKey: string(ssh.MarshalAuthorizedKey(sp))})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pemDecode([]byte(resp.TLSCert))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(resp.TLSCA))
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{block}, PrivateKey: priv}}}}}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

func kubeClusterSettings(name, kubeconfig string) kubeagent.ClusterSettings {
	return kubeagent.ClusterSettings{Name: name, Kubeconfig: kubeconfig, Labels: map[string]string{"env": "dev"}}
}

func pemDecode(b []byte) ([]byte, []byte) {
	p, rest := pem.Decode(b)
	if p == nil {
		return nil, rest
	}
	return p.Bytes, rest
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestKubeServiceConfig(t *testing.T) {
	c := &Config{DataDir: t.TempDir(), Services: []string{Kube}}
	if err := c.CheckAndSetDefaults(); err == nil || !strings.Contains(err.Error(), "--proxy") {
		t.Fatalf("a kube agent without a proxy: %v", err)
	}
	c = &Config{DataDir: t.TempDir(), Services: []string{Kube}, Kube: kubeagent.Settings{ProxyAddr: "proxy:3080"}}
	if err := c.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(cfgPath, []byte("services: [kube]\nkube:\n  proxy: p:3080\n  clusters:\n    - {name: a, kubeconfig: /k, labels: {env: dev}}\n    - {name: b, in_cluster: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded.Kube.Clusters) != 2 || loaded.Kube.Clusters[0].Labels["env"] != "dev" || !loaded.Kube.Clusters[1].InCluster {
		t.Fatalf("kube config: %+v", loaded.Kube)
	}
}

// writeAgentKubeconfig writes the kube agent's kubeconfig for the API
// server at server (its token agent-secret) into dir and returns its path.
func writeAgentKubeconfig(tb testing.TB, dir, server string) string {
	tb.Helper()
	kubeconfig := filepath.Join(dir, "agent.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: a
clusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: agent-secret}}]
contexts: [{name: a, context: {cluster: c, user: u}}]
`, server)), 0o600); err != nil {
		tb.Fatal(err)
	}
	return kubeconfig
}

// upsertKubeDevRole writes the kube-dev role of the kube tests: the
// clusters labelled env=dev, as the developers group, on resources (the
// YAML list's items); it returns the role written.
func upsertKubeDevRole(t *testing.T, a *auth.Server, resources string) *policy.Role {
	t.Helper()
	roles, err := policy.ParseRoles([]byte("kind: role\nmetadata: {name: kube-dev}\nspec:\n  allow:\n" +
		"    kubernetes_labels: {env: dev}\n    kubernetes_groups: [developers]\n    kubernetes_resources: [" + resources + "]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.UpsertRole(context.Background(), auth.AdminCaller(), roles[0]); err != nil {
		t.Fatal(err)
	}
	return roles[0]
}

// startKubeAgent starts a kube agent (services: [kube]) named agent1 in
// dir/kube, serving cluster k1 (env=dev) through kubeconfig, connected to
// the proxy at proxyAddr with a kube join token.
func startKubeAgent(t *testing.T, dir, proxyAddr, token, pin, kubeconfig string) *Process {
	t.Helper()
	kcfg := &Config{DataDir: filepath.Join(dir, "kube"), Services: []string{Kube}, Proxy: ProxyConfig{MetricsAddr: MetricsOff}}
	kcfg.Kube.ProxyAddr, kcfg.Kube.Token, kcfg.Kube.CAPin, kcfg.Kube.Name = proxyAddr, token, pin, "agent1"
	kcfg.Kube.Clusters = append(kcfg.Kube.Clusters, kubeClusterSettings("k1", kubeconfig))
	kp, err := Start(context.Background(), kcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}
