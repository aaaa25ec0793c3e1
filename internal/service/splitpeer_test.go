package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

// TestSplitProxyPeeringKubeForwarding: two proxies running apart, with
// peering, in one process for speed (the netns lab tests,
// internal/clustertest TestSplitProxyPeering*, run them as processes on
// hosts of their own). A kube agent is connected to proxy 1; a user's
// request at proxy 2 is forwarded to proxy 1 over the peer link and
// reaches the agent with the decision made there; what the roles do not
// allow never reaches the API server; a lock refuses the next request.
func TestSplitProxyPeeringKubeForwarding(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		fmt.Fprintf(w, `{"kind":"PodList","user":%q}`, r.Header.Get("Impersonate-User"))
	}))
	defer upstream.Close()
	dir := t.TempDir()
	kubeconfig := writeAgentKubeconfig(t, dir, upstream.URL)
	ctx := context.Background()
	ap, err := Start(ctx, &Config{DataDir: filepath.Join(dir, "auth"), Services: []string{Auth}, Auth: AuthConfig{Listen: "127.0.0.1:0"},
		Proxy: ProxyConfig{MetricsAddr: MetricsOff}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close()
	a := ap.Auth()
	pin := api.Fingerprint(a.Authority().TLSCACert().Raw)
	token := func(typ string) string {
		tok, err := a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: typ, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}
	startProxy := func(name string) *Process {
		pp, err := Start(ctx, &Config{DataDir: filepath.Join(dir, name), Services: []string{Proxy}, Proxy: ProxyConfig{Listen: "127.0.0.1:0",
			MetricsAddr: MetricsOff, AuthServers: []string{ap.ProxyAddr()}, Token: token(wire.TokenTypeProxy), CAPin: pin,
			PeerListen: "127.0.0.1:0", PeerAddr: "127.0.0.1:0"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pp.Close() })
		return pp
	}
	p1, p2 := startProxy("proxy1"), startProxy("proxy2")
	defer startKubeAgent(t, dir, p1.ProxyAddr(), token(wire.TokenTypeKube), pin, kubeconfig).Close()

	upsertKubeDevRole(t, a, "{kind: pods, namespace: default}")
	hc := userClient(t, a, "alice", []string{"kube-dev"})
	base := "https://" + p2.ProxyAddr() + "/kube/"
	get := func(path string) (int, string) {
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var code int
	var body string
	testkit.WaitFor(t, "proxy 2 to reach the cluster behind proxy 1", func() bool {
		code, body = get("k1/api/v1/namespaces/default/pods")
		return code == http.StatusOK
	})
	if !strings.Contains(body, `"user":"alice"`) {
		t.Fatalf("allowed request: %d %s", code, body)
	}
	peerKubeRetry(t, ap, p2, get)
	mu.Lock()
	n := len(seen)
	mu.Unlock()
	if code, body := get("k1/api/v1/namespaces/kube-system/pods"); code != http.StatusForbidden || !strings.Contains(body, "not allowed") {
		t.Fatalf("a request the roles do not allow: %d %s", code, body)
	}
	mu.Lock()
	if len(seen) != n {
		t.Fatalf("a refused request reached the API server: %v", seen[n:])
	}
	mu.Unlock()
	if _, err := a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "alice"}, Message: "go home"}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the locked user to be refused at proxy 2", func() bool {
		code, body := get("k1/api/v1/namespaces/default/pods")
		return code == http.StatusForbidden && strings.Contains(body, "go home")
	})
}

// peerKubeRetry: a proxy through which cluster k1's agent is published
// (newer than proxy 1's key, so proxy 2 tries it first) but which cannot
// be reached, as a proxy that was just killed (its record not yet
// expired): proxy 2's request is retried through proxy 1 and succeeds. A
// cluster published only through unreachable proxies is refused with a
// 503 naming the reason.
func peerKubeRetry(t *testing.T, ap, p2 *Process, get func(string) (int, string)) {
	t.Helper()
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	items, err := ap.backend.List(ctx, "/peering/kube/", 0)
	if err != nil || len(items) != 1 {
		t.Fatalf("the kube agent's peering keys: %d, %v", len(items), err)
	}
	var rec struct {
		Proxy    string             `json:"proxy"`
		Agent    string             `json:"agent"`
		Clusters []auth.KubeCluster `json:"clusters"`
	}
	if err := json.Unmarshal(items[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	if _, ok := p2.proxy.Peers()[rec.Proxy]; !ok {
		t.Fatalf("k1 is published through %s, not proxy 1 (proxy 2's peers: %v)", rec.Proxy, p2.proxy.Peers())
	}
	put := func(key string, v any, expires time.Time) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ap.backend.Put(ctx, storage.Item{Key: key, Value: b, Expires: expires}); err != nil {
			t.Fatal(err)
		}
	}
	const dead = "proxy-00000000000000de"
	k2 := rec.Clusters[0]
	k2.Name = "k2"
	put("/peering/kube/"+rec.Agent+"/"+dead, map[string]any{"proxy": dead, "agent": rec.Agent,
		"clusters": append(rec.Clusters, k2)}, time.Time{})
	// Last: once proxy 2 knows the dead proxy it has its kube key too.
	put("/peering/proxies/"+dead, map[string]string{"id": dead, "addr": deadAddr}, time.Now().Add(time.Minute))
	testkit.WaitFor(t, "proxy 2 to know the unreachable proxy", func() bool { _, ok := p2.proxy.Peers()[dead]; return ok })
	if code, body := get("k1/api/v1/namespaces/default/pods"); code != http.StatusOK || !strings.Contains(body, `"user":"alice"`) {
		t.Fatalf("a request whose first peer is unreachable: %d %s", code, body)
	}
	code, body := get("k2/api/v1/namespaces/default/pods")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "could be reached") || !strings.Contains(body, dead) {
		t.Fatalf("a cluster behind an unreachable proxy only: %d %s", code, body)
	}
	if err := ap.backend.Delete(ctx, "/peering/proxies/"+dead); err != nil {
		t.Fatal(err)
	}
	if err := ap.backend.Delete(ctx, "/peering/kube/"+rec.Agent+"/"+dead); err != nil {
		t.Fatal(err)
	}
}
