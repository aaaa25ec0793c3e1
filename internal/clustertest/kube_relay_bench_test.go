//go:build integration

package clustertest

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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/kubetest"
)

// tlsRelayChain is the cheapest thing with Warden's shape that can stand
// between kubectl and the API server, as a floor for the exec throughput
// benchmark: two byte relays, each a TLS server whose connections are
// copied to a TLS client connection (kubectl → relay 1 → relay 2 → API
// server: three encrypted legs, as kubectl → proxy → agent → API server).
// Relay 2 presents the admin's client certificate. They parse nothing,
// authorize nothing, record nothing: what any proxy of two hops costs the
// machine at least. It returns a kubeconfig through it.
func tlsRelayChain(tb testing.TB, kc *kubetest.Cluster) string {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	relayPool := x509.NewCertPool()
	relayPool.AddCert(leaf)
	admin, err := tls.LoadX509KeyPair(filepath.Join(kc.Dir, "admin.crt"), filepath.Join(kc.Dir, "admin.key"))
	if err != nil {
		tb.Fatal(err)
	}
	apiPool := x509.NewCertPool()
	apiPool.AppendCertsFromPEM(kc.CAPEM)
	// HTTP/1.1 on every leg: the relays carry the bytes of one protocol.
	serve := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{"http/1.1"}}
	apiAddr := strings.TrimPrefix(kc.Server, "https://")
	second := tlsRelay(tb, serve, func() (net.Conn, error) {
		return tls.Dial("tcp", apiAddr, &tls.Config{RootCAs: apiPool, Certificates: []tls.Certificate{admin}, NextProtos: []string{"http/1.1"}})
	})
	first := tlsRelay(tb, serve, func() (net.Conn, error) {
		return tls.Dial("tcp", second, &tls.Config{RootCAs: relayPool, NextProtos: []string{"http/1.1"}})
	})
	b64 := base64.StdEncoding.EncodeToString
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: relay
clusters:
- name: relay
  cluster:
    server: https://%s
    certificate-authority-data: %s
users:
- name: relay
  user: {token: relay-carries-no-credential}
contexts:
- name: relay
  context: {cluster: relay, user: relay}
`, first, b64(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	path := filepath.Join(tb.TempDir(), "relay.kubeconfig")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// tlsRelay accepts TLS connections on a loopback port and carries each
// to a connection from dial (forwardFrom) until the test ends. It returns
// the address.
func tlsRelay(tb testing.TB, conf *tls.Config, dial func() (net.Conn, error)) string {
	tb.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		tb.Fatal(err)
	}
	forwardFrom(tb, ln, dial)
	return ln.Addr().String()
}
