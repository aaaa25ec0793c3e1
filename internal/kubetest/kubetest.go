// Package kubetest starts a real Kubernetes control plane for tests: etcd
// (Debian's etcd-server) and kube-apiserver (built from the k8s.io/kubernetes
// module by scripts/kube-peer.sh, cached outside the work tree), on
// loopback ports, with client-certificate authentication and RBAC. It
// writes two kubeconfigs: the admin's (system:masters) and the kube
// agent's (a user bound only to the ClusterRole docs/kubernetes.md
// documents: impersonate). A missing peer fails the test; it never skips.
package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// Version is the Kubernetes release scripts/kube-peer.sh builds.
const Version = "1.34.4"

// AgentClusterRole is the ClusterRole a kube agent needs, and all it
// needs: to impersonate users and groups (docs/kubernetes.md shows the
// same).
const AgentClusterRole = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: warden-kube-agent
rules:
- apiGroups: [""]
  resources: ["users", "groups", "serviceaccounts"]
  verbs: ["impersonate"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: warden-kube-agent
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: warden-kube-agent
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: warden-kube-agent
`

// Cluster is a running control plane.
type Cluster struct {
	Dir    string
	Server string // https://127.0.0.1:PORT
	CAPEM  []byte
	// AdminKubeconfig is system:masters; AgentKubeconfig is the user
	// warden-kube-agent, bound to AgentClusterRole.
	AdminKubeconfig, AgentKubeconfig string
	admin                            *http.Client
	caKey                            *ecdsa.PrivateKey
	caCert                           *x509.Certificate
}

// APIServerPath is where the test finds kube-apiserver:
// $WARDEN_KUBE_APISERVER, else scripts/kube-peer.sh's cache.
func APIServerPath() string {
	if p := os.Getenv("WARDEN_KUBE_APISERVER"); p != "" {
		return p
	}
	cache := os.Getenv("WARDEN_CI_CACHE")
	if cache == "" {
		cache = "/var/cache/warden-ci"
	}
	return filepath.Join(cache, "kube-apiserver-v"+Version, "kube-apiserver")
}

// Start starts etcd and kube-apiserver and waits until the API server is
// ready and the agent's ClusterRole is applied. Both stop with the test.
func Start(t testing.TB) *Cluster {
	t.Helper()
	apiserver := APIServerPath()
	if _, err := os.Stat(apiserver); err != nil {
		t.Fatalf("kube-apiserver %s: %v (build it with scripts/kube-peer.sh, as .ci/run does)", apiserver, err)
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd: %v (apt-get install etcd-server, as scripts/kube-peer.sh does)", err)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatalf("kubectl: %v", err)
	}
	dir := t.TempDir()
	c := &Cluster{Dir: dir}

	// Certificates: a CA, the API server's serving certificate, the
	// admin's and the agent's client certificates, service account keys.
	caKey, caCert, caDER := newCA(t)
	c.caKey, c.caCert = caKey, caCert
	c.CAPEM = pemBlock("CERTIFICATE", caDER)
	write(t, dir, "ca.crt", c.CAPEM)
	servingKey, servingDER := issue(t, caKey, caCert, pkix.Name{CommonName: "kube-apiserver"}, true)
	write(t, dir, "apiserver.crt", pemBlock("CERTIFICATE", servingDER))
	write(t, dir, "apiserver.key", keyPEM(t, servingKey))
	saKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	saPub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	write(t, dir, "sa.key", keyPEM(t, saKey))
	write(t, dir, "sa.pub", pemBlock("PUBLIC KEY", saPub))

	etcdPort, etcdPeer, port := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	etcdDone, etcdOut := startProc(t, "etcd", etcd, "--name", "default", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--log-level", "error")
	c.Server = "https://127.0.0.1:" + strconv.Itoa(port)
	apiDone, apiOut := startProc(t, "kube-apiserver", apiserver,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(port),
		"--tls-cert-file", filepath.Join(dir, "apiserver.crt"), "--tls-private-key-file", filepath.Join(dir, "apiserver.key"),
		"--client-ca-file", filepath.Join(dir, "ca.crt"),
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--authorization-mode", "Node,RBAC",
		// The test kubelet (StartKubelet) is reached at its node's InternalIP.
		"--kubelet-preferred-address-types", "InternalIP",
		// No controller manager runs to make service accounts.
		"--disable-admission-plugins", "ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--cert-dir", filepath.Join(dir, "certs"),
		"--v", "0")

	c.AdminKubeconfig = c.kubeconfig(t, "admin", caKey, caCert, pkix.Name{CommonName: "kube-admin", Organization: []string{"system:masters"}})
	c.AgentKubeconfig = c.kubeconfig(t, "agent", caKey, caCert, pkix.Name{CommonName: "warden-kube-agent"})
	adminCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAPEM)
	c.admin = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{adminCert}}}}
	t.Cleanup(c.admin.CloseIdleConnections)
	err = patience.Retry(t, func() error {
		select {
		case <-etcdDone:
			t.Fatalf("etcd exited:\n%s", tail(etcdOut.String(), 4000))
		case <-apiDone:
			t.Fatalf("kube-apiserver exited:\n%s", tail(apiOut.String(), 4000))
		default:
		}
		resp, err := c.admin.Get(c.Server + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("kube-apiserver not ready: %v", err)
	}
	if out, err := c.Kubectl("apply", "-f", "-").stdin(AgentClusterRole).run(); err != nil {
		t.Fatalf("apply the agent's ClusterRole: %v\n%s", err, out)
	}
	return c
}

// KubectlCmd is a kubectl command as the admin.
type KubectlCmd struct {
	cmd *exec.Cmd
}

// Kubectl runs the real kubectl as the cluster admin.
func (c *Cluster) Kubectl(args ...string) *KubectlCmd {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	return &KubectlCmd{cmd: cmd}
}

func (k *KubectlCmd) stdin(s string) *KubectlCmd {
	k.cmd.Stdin = strings.NewReader(s)
	return k
}

// Run runs it and returns its combined output.
func (k *KubectlCmd) run() (string, error) {
	out, err := k.cmd.CombinedOutput()
	return string(out), err
}

// Must runs kubectl as the admin and fails the test on an error.
func (c *Cluster) Must(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	k := c.Kubectl(args...)
	if stdin != "" {
		k.stdin(stdin)
	}
	out, err := k.run()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *Cluster) kubeconfig(t testing.TB, name string, caKey *ecdsa.PrivateKey, caCert *x509.Certificate, subject pkix.Name) string {
	key, der := issue(t, caKey, caCert, subject, false)
	certPEM, kPEM := pemBlock("CERTIFICATE", der), keyPEM(t, key)
	write(t, c.Dir, name+".crt", certPEM)
	write(t, c.Dir, name+".key", kPEM)
	b64 := base64.StdEncoding.EncodeToString
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: %[1]s
clusters:
- name: test
  cluster:
    server: %[2]s
    certificate-authority-data: %[3]s
users:
- name: %[1]s
  user:
    client-certificate-data: %[4]s
    client-key-data: %[5]s
contexts:
- name: %[1]s
  context: {cluster: test, user: %[1]s}
`, name, c.Server, b64(c.CAPEM), b64(certPEM), b64(kPEM))
	return write(t, c.Dir, name+".kubeconfig", []byte(kc))
}

func startProc(t testing.TB, name, path string, args ...string) (done <-chan struct{}, out *syncbuf.Buffer) {
	t.Helper()
	cmd := exec.Command(path, args...)
	out = &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", name, tail(out.String(), 4000))
		}
	})
	return exited, out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func newCA(t testing.TB) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubetest-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return key, cert, der
}

func issue(t testing.TB, caKey *ecdsa.PrivateKey, ca *x509.Certificate, subject pkix.Name, server bool) (*ecdsa.PrivateKey, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func keyPEM(t testing.TB, k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func write(t testing.TB, dir, name string, data []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }
