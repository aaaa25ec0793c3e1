//go:build integration

package clustertest

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/kubetest"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

const splitPeerPort = 3082

// StartPeeringProxy is StartProxy with proxy peering on (its peer
// listener on the host's own address).
func (s *splitCluster) StartPeeringProxy(name string, via *splitAuth, auths ...*splitAuth) *splitProxyProc {
	s.t.Helper()
	h := s.lab.Host(name)
	p := &splitProxyProc{host: h}
	args := []string{"start", "--services", "proxy", "--proxy-listen", p.Addr(), "--metrics-addr", "off",
		"--peer-listen", h.Addr(splitPeerPort),
		"--token-file", s.token(via, wire.TokenTypeProxy), "--ca-pin", s.pin, "--data-dir", filepath.Join(s.dir, name), "--name", name}
	for _, a := range auths {
		args = append(args, "--auth-server", a.Addr())
	}
	p.proc = h.Start(s.t, WardenBinary, args...)
	p.proc.waitOutput(s.t, "is running at")
	return p
}

// TestSplitProxyPeering: two auth instances and two proxies running apart,
// each a process on a host of its own, on one PostgreSQL database, with
// peering on. A node has its tunnel to proxy A only; a user logged in
// through proxy B reaches it (the real OpenSSH client, and warden ssh):
// proxy B forwards the dial to proxy A over mutual TLS, the proxies having
// found each other through auth. A lock through auth B ends the live
// session B → A → node within a second, and proxy A's peer listener
// refuses a certificate that is not a proxy's peering certificate.
func TestSplitProxyPeering(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	s := newSplitCluster(t)
	authA := s.StartAuth("auth-a")
	authB := s.StartAuth("auth-b")
	proxyA := s.StartPeeringProxy("proxy-a", authA, authA, authB)
	proxyB := s.StartPeeringProxy("proxy-b", authB, authB, authA)
	s.StartNode("node-a", authA, proxyA)

	u := s.AddUser(authA, "peeruser", []string{"access"}, []string{osLogin})
	cfgB := s.Login(u, proxyB)
	// Proxy B learns the tunnel at proxy A through its watch on auth.
	var r Result
	testkit.WaitFor(t, "ssh through proxy B to node-a, whose tunnel ends at proxy A", func() bool {
		r = Run(t, nil, "ssh", sshArgs(cfgB, "-tt", osLogin+"@node-a", "echo", "hello-through-peer")...)
		return r.Code == 0
	})
	if !strings.Contains(r.Stdout, "hello-through-peer") {
		t.Fatalf("ssh through proxy B: %s", r)
	}
	home := filepath.Dir(cfgB)
	if w := Run(t, nil, WardenBinary, "--home", home, "ssh", osLogin+"@node-a", "echo", "via-warden-ssh"); w.Code != 0 || !strings.Contains(w.Stdout, "via-warden-ssh") {
		t.Fatalf("warden ssh through proxy B: %s", w)
	}

	// A lock through auth B ends the live session user → B → A → node.
	live, err := startLive(t, sshArgs(cfgB, osLogin+"@node-a", liveCommand))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	id := lockID(t, s.adminCLI(authB, "lock", "--user", "peeruser", "--message", "locked-through-auth-b"))
	res, took, ended := endsWithin(t, live, start, time.Second)
	if !ended {
		t.Fatalf("the session B→A→node-a still runs %s after the lock through auth B", took)
	}
	if res.Code == 0 {
		t.Fatalf("the session through the peer did not end by the lock: %s", res)
	}
	t.Logf("a lock through auth B ended a session user→proxy B→proxy A→node-a %s after the lock command started: %s",
		took.Round(time.Millisecond), strings.TrimSpace(res.Stderr))
	if r := Run(t, nil, "ssh", sshArgs(cfgB, osLogin+"@node-a", "true")...); r.Code == 0 {
		t.Fatalf("a new session through the peer while locked: %s", r)
	}
	if r := s.adminCLI(authA, "unlock", id); r.Code != 0 {
		t.Fatalf("unlock through auth A: %s", r)
	}
	testkit.WaitFor(t, "ssh through proxy B again after the unlock", func() bool {
		return Run(t, nil, "ssh", sshArgs(cfgB, osLogin+"@node-a", "true")...).Code == 0
	})

	// Proxy A's peer listener takes nothing but a proxy's peering
	// certificate: the admin's certificate from the same CA fails the
	// handshake, as does no certificate at all.
	admin, err := idfile.Read(idfile.AdminPath(authA.dataDir))
	if err != nil {
		t.Fatal(err)
	}
	adminCert, err := admin.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := admin.RootCAs()
	if err != nil {
		t.Fatal(err)
	}
	peerAddr := proxyA.host.Addr(splitPeerPort)
	for name, certs := range map[string][]tls.Certificate{"the admin's certificate": {*adminCert}, "no certificate": nil} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", peerAddr, &tls.Config{MinVersion: tls.VersionTLS13,
			InsecureSkipVerify: true, Certificates: certs, RootCAs: pool})
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			// TLS 1.3: the server's verdict on the client's certificate
			// arrives after the client's side of the handshake.
			_, _ = c.Write([]byte("WPD1"))
			var b [1]byte
			_, err = io.ReadFull(c, b[:])
			c.Close()
		}
		if err == nil {
			t.Fatalf("proxy A's peer listener answered a client with %s", name)
		}
		t.Logf("peer listener with %s: %v", name, err)
	}
	testkit.WaitFor(t, "proxy A to log the refused peer connections", func() bool {
		return strings.Count(proxyA.proc.out.String(), "peer connection refused") >= 2
	})
}

const splitKubeRoles = `
kind: role
metadata: {name: cm-viewer}
spec:
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: [viewers]
    kubernetes_resources:
      - {kind: configmaps, namespace: default, verbs: [get, list, watch]}
`

// TestSplitProxyPeeringKube: a kube agent (the real warden binary in front
// of a real kube-apiserver) is connected to proxy A only; a user logged in
// through proxy B runs the real kubectl against the cluster. Proxy B
// decides the request, forwards it to proxy A over the peer link, and A
// decides it again and sends it to the agent. What the user's roles do not
// allow is refused; a lock through auth A ends a live watch through B
// within a second and refuses new requests.
func TestSplitProxyPeeringKube(t *testing.T) {
	kc := kubetest.Start(t)
	s := newSplitCluster(t)
	authA := s.StartAuth("auth-a")
	authB := s.StartAuth("auth-b")
	proxyA := s.StartPeeringProxy("proxy-a", authA, authA, authB)
	proxyB := s.StartPeeringProxy("proxy-b", authB, authB, authA)
	s.apply(authA, "apply roles", splitKubeRoles)
	kc.Must(t, "", "create", "role", "cm-reader", "--verb=get,list,watch", "--resource=configmaps", "-n", "default")
	kc.Must(t, "", "create", "rolebinding", "viewers", "--role=cm-reader", "--group=viewers", "-n", "default")
	kc.Must(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm1, namespace: default}\ndata: {a: b}\n", "apply", "-f", "-")

	// The agent runs on the test's host (the API server listens on its
	// loopback) and connects to proxy A only.
	dir := t.TempDir()
	agent := startBackground(t, WardenBinary, "start", "--data-dir", filepath.Join(dir, "kagent"), "--services", "kube",
		"--proxy", proxyA.Addr(), "--token-file", s.token(authA, wire.TokenTypeKube), "--ca-pin", s.pin,
		"--name", "kagent", "--kube-cluster", "test-k8s", "--kubeconfig", kc.AgentKubeconfig, "--labels", "env=dev")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube agent output:\n%s%s", agent.out.String(), agent.err.String())
		}
	})
	testkit.WaitFor(t, "auth B to list the cluster behind proxy A", func() bool {
		cl, err := authB.admin.ListKubeClusters(context.Background())
		return err == nil && len(cl) == 1
	})

	u := s.AddUser(authA, "kubepeer", []string{"cm-viewer"}, []string{osLogin})
	home := filepath.Dir(s.Login(u, proxyB))
	kubeconfig := filepath.Join(home, "test-k8s.kubeconfig")
	if r := Run(t, nil, WardenBinary, "--home", home, "kube", "login", "test-k8s", "--kubeconfig", kubeconfig, "--binary", WardenBinary); r.Code != 0 {
		t.Fatalf("kube login through proxy B: %s", r)
	}
	var r Result
	testkit.WaitFor(t, "kubectl through proxy B to reach the cluster behind proxy A", func() bool {
		r = kubectl(t, kubeconfig, "get", "configmaps", "-n", "default")
		return r.Code == 0
	})
	if !strings.Contains(r.Stdout, "cm1") {
		t.Fatalf("kubectl get configmaps through proxy B: %s", r)
	}
	if r := kubectl(t, kubeconfig, "get", "secrets", "-n", "default"); r.Code == 0 || !strings.Contains(r.Stderr, "Forbidden") {
		t.Fatalf("kubectl get secrets (not allowed by the user's roles) through proxy B: %s", r)
	}
	// Proxy A audited the forwarded request as one from proxy B.
	testkit.WaitFor(t, "the kube.request forwarded from proxy B in the audit log", func() bool {
		evs, err := authA.admin.SearchAudit(context.Background(), audit.Query{Type: audit.KubeRequest, User: "kubepeer", Limit: 100})
		if err != nil {
			return false
		}
		for _, ev := range evs {
			if ev.Success && ev.Fields["from_proxy"] != nil && ev.Fields["resource"] == "configmaps" {
				return true
			}
		}
		return false
	})

	// A lock through auth A ends a live watch user → B → A → agent.
	watch := startBackground(t, "kubectl", "--kubeconfig", kubeconfig, "get", "configmaps", "-n", "default", "-w")
	testkit.WaitFor(t, "the watch through proxy B to list cm1", func() bool {
		select {
		case code := <-watch.done:
			t.Fatalf("the watch ended (exit %d): %s", code, watch.err.String())
		default:
		}
		return strings.Contains(watch.out.String(), "cm1")
	})
	start := time.Now()
	lockID(t, s.adminCLI(authA, "lock", "--user", "kubepeer", "--message", "kube-locked"))
	_, took, ended := endsWithin(t, watch, start, time.Second)
	if !ended {
		t.Fatalf("the kubectl watch through the peer still runs %s after the lock through auth A", took)
	}
	t.Logf("a lock through auth A ended a kubectl watch user→proxy B→proxy A→agent %s after the lock command started", took.Round(time.Millisecond))
	if r := kubectl(t, kubeconfig, "get", "configmaps", "-n", "default"); r.Code == 0 {
		t.Fatalf("kubectl through proxy B while locked: %s", r)
	}
}
