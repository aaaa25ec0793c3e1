package service

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

// TestSplitProxyRenewsItsIdentity: auth alone (services: [auth]) and a
// proxy alone (services: [proxy]) in one test process. The proxy joins
// with a proxy token and its CA pin; with short certificates it renews
// its identity while it runs, and the SSH host certificate it presents
// changes with it (a proxy that kept its first one would be refused by
// every client once it expired). A wrong pin refuses to join.
func TestSplitProxyRenewsItsIdentity(t *testing.T) {
	old := identityCheckEvery
	identityCheckEvery = 100 * time.Millisecond
	t.Cleanup(func() { identityCheckEvery = old })
	ctx := context.Background()
	a, err := Start(ctx, &Config{DataDir: t.TempDir(), Services: []string{Auth}, Auth: AuthConfig{Listen: "127.0.0.1:0", NodeCertTTL: 3 * time.Second},
		Proxy: ProxyConfig{MetricsAddr: MetricsOff}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	tok, err := a.Auth().CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: wire.TokenTypeProxy, TTL: time.Hour, Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	pin := api.Fingerprint(a.Auth().Authority().TLSCACert().Raw)

	bad := &Config{DataDir: t.TempDir(), Services: []string{Proxy}, Proxy: ProxyConfig{Listen: "127.0.0.1:0", MetricsAddr: MetricsOff,
		AuthServers: []string{a.ProxyAddr()}, Token: tok.Token, CAPin: "sha256:00"}}
	if p, err := Start(ctx, bad, nil); err == nil {
		p.Close()
		t.Fatal("a proxy joined with the wrong CA pin")
	}

	dir := t.TempDir()
	p, err := Start(ctx, &Config{DataDir: dir, Services: []string{Proxy}, Proxy: ProxyConfig{Listen: "127.0.0.1:0", MetricsAddr: MetricsOff,
		AuthServers: []string{a.ProxyAddr()}, Token: tok.Token, CAPin: pin}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	hostCert := func() *ssh.Certificate {
		var got *ssh.Certificate
		cfg := &ssh.ClientConfig{User: "probe", Timeout: 5 * time.Second,
			HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
				got, _ = key.(*ssh.Certificate)
				return nil
			}}
		c, err := ssh.Dial("tcp", p.ProxyAddr(), cfg)
		if err == nil {
			c.Close()
		}
		if got == nil {
			t.Fatalf("no host certificate from the proxy: %v", err)
		}
		return got
	}
	first := hostCert()
	if first.KeyId != "proxy" || first.CertType != ssh.HostCert {
		t.Fatalf("proxy host certificate: %+v", first)
	}
	id, err := idfile.Read(filepath.Join(dir, "proxy-identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the proxy to renew its identity", func() bool {
		again, err := idfile.Read(filepath.Join(dir, "proxy-identity.json"))
		return err == nil && again.TLSCert != id.TLSCert && again.TLSServerCert != id.TLSServerCert
	})
	testkit.WaitFor(t, "the proxy to present its renewed host certificate", func() bool {
		return hostCert().Serial != first.Serial
	})
	if _, err := os.Stat(filepath.Join(dir, "proxy-identity.json")); err != nil {
		t.Fatal(err)
	}
}

// TestSplitProxyViewFailsClosed: the decisions a proxy running apart
// makes from its watched view of auth. Before the first view every
// subject is refused; a lock in the view refuses its subject, and its
// removal lets it back; a user's nodes are those their current roles
// allow, none for a role the view does not know.
func TestSplitProxyViewFailsClosed(t *testing.T) {
	s := &splitProxy{locks: lock.NewSet()}
	alice := lock.Subject{User: "alice", Roles: []string{"dev"}, Issued: time.Now()}
	if err := s.CheckLock(alice); err == nil {
		t.Fatal("a subject was let in before the proxy had any view of the locks")
	}
	roles, err := policy.ParseRoles([]byte("kind: role\nmetadata: {name: dev}\nspec: {allow: {logins: [dev], node_labels: {env: dev}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s.apply(api.WatchEvent{Type: "snapshot", Roles: roles})
	if err := s.CheckLock(alice); err != nil {
		t.Fatalf("no lock, yet refused: %v", err)
	}
	s.apply(api.WatchEvent{Type: "put", Kind: "lock", Lock: &lock.Lock{ID: "l1", Target: lock.Target{User: "alice"}, Message: "stop"}})
	if err := s.CheckLock(alice); err == nil || !strings.Contains(err.Error(), "stop") {
		t.Fatalf("a locked user: %v", err)
	}
	s.apply(api.WatchEvent{Type: "delete", Kind: "lock", Name: "l1"})
	if err := s.CheckLock(alice); err != nil {
		t.Fatalf("after the unlock: %v", err)
	}
	if got := s.rolesOf([]string{"dev", "unknown"}); len(got) != 1 || got[0].Metadata.Name != "dev" {
		t.Fatalf("roles of the view: %+v", got)
	}
	s.apply(api.WatchEvent{Type: "delete", Kind: "role", Name: "dev"})
	if got := s.rolesOf([]string{"dev"}); len(got) != 0 {
		t.Fatalf("a deleted role is still in the view: %+v", got)
	}
}

// TestSplitProxyKube: Kubernetes through a proxy running apart from auth.
// A kube agent connects to the proxy (services: [kube]); auth lists its
// cluster (the proxy publishes it); a user's request is decided by auth
// for the user the proxy verified and reaches the API server as them; one
// their roles do not allow never does; a lock made through auth ends a
// live watch at the proxy and refuses the next request.
func TestSplitProxyKube(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		if r.URL.Query().Get("watch") == "true" {
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(w, "{\"n\":%d}\n", i); err != nil {
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
	pp, err := Start(ctx, &Config{DataDir: filepath.Join(dir, "proxy"), Services: []string{Proxy}, Proxy: ProxyConfig{Listen: "127.0.0.1:0",
		MetricsAddr: MetricsOff, AuthServers: []string{ap.ProxyAddr()}, Token: token(wire.TokenTypeProxy), CAPin: pin}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pp.Close()
	defer startKubeAgent(t, dir, pp.ProxyAddr(), token(wire.TokenTypeKube), pin, kubeconfig).Close()

	upsertKubeDevRole(t, a, "{kind: pods, namespace: default}")
	testkit.WaitFor(t, "auth to list the cluster the proxy publishes", func() bool {
		cl, err := a.ListKubeClusters(ctx, auth.AdminCaller())
		return err == nil && len(cl) == 1 && cl[0].Name == "k1"
	})
	hc := userClient(t, a, "alice", []string{"kube-dev"})
	base := "https://" + pp.ProxyAddr() + "/kube/"
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
	testkit.WaitFor(t, "the proxy's view of the roles", func() bool {
		code, body = get("k1/api/v1/namespaces/default/pods")
		return code == http.StatusOK
	})
	if !strings.Contains(body, `"user":"alice"`) {
		t.Fatalf("allowed request: %d %s", code, body)
	}
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

	resp, err := hc.Get(base + "k1/api/v1/namespaces/default/pods?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	if _, err := lines.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
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
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatal("the watch outlived the lock")
	}
	if code, body := get("k1/api/v1/namespaces/default/pods"); code != http.StatusForbidden || !strings.Contains(body, "go home") {
		t.Fatalf("after the lock: %d %s", code, body)
	}
}
