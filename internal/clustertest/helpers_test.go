package clustertest

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/service"
)

// NodeAgentCfg shortens option functions in tests.
type NodeAgentCfg = nodeagent.Config

func serviceProxy(listen string) service.ProxyConfig { return service.ProxyConfig{Listen: listen} }

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// directArgs builds ssh arguments for a node's own port (direct mode), so a
// session does not depend on the proxy.
func directArgs(home, addr, nodeID string, rest ...string) []string {
	host, port, _ := strings.Cut(addr, ":")
	return append([]string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile=" + home + "/key", "-o", "CertificateFile=" + home + "/key-cert.pub",
		"-o", "UserKnownHostsFile=" + home + "/known_hosts", "-o", "StrictHostKeyChecking=yes",
		"-o", "HostKeyAlias=" + nodeID, "-o", "HostName=" + host, "-p", port}, rest...)
}

// waitFor polls cond every 50 ms until it holds, failing the test with what
// it waited for when the test's patience runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := patience.Deadline(t)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func serviceProxyMetrics(addr string) service.ProxyConfig {
	return service.ProxyConfig{MetricsAddr: addr}
}
