//go:build integration

package clustertest

import (
	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/idfile"
	"io"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/nodeagent"
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

// directArgs builds ssh arguments for a node's own port (direct mode), so a
// session does not depend on the proxy.
func directArgs(home, addr, nodeID string, rest ...string) []string {
	host, port, _ := strings.Cut(addr, ":")
	return append([]string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile=" + home + "/key", "-o", "CertificateFile=" + home + "/key-cert.pub",
		"-o", "UserKnownHostsFile=" + home + "/known_hosts", "-o", "StrictHostKeyChecking=yes",
		"-o", "HostKeyAlias=" + nodeID, "-o", "HostName=" + host, "-p", port}, rest...)
}

func serviceProxyMetrics(addr string) service.ProxyConfig {
	return service.ProxyConfig{MetricsAddr: addr}
}

// nodeClient is an API client with the identity of a node, id, closed when
// the test ends.
func nodeClient(t *testing.T, c *Cluster, id *idfile.File) *api.Client {
	t.Helper()
	cert, err := id.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := id.RootCAs()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := api.NewClient(api.ClientConfig{Addr: c.ProxyAddr(), RootCAs: pool, Certificate: cert})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
