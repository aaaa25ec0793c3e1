package kubeagent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// The agent's own credentials for a cluster: a kubeconfig (a context in
// it: the server, its CA, a client certificate or a bearer token) or the
// in-cluster service account. They are used only here, for requests the
// agent sends on; they never leave the agent.

const (
	inClusterDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// maxKubeconfig bounds the kubeconfig file read.
	maxKubeconfig = 4 << 20
)

type kubeconfigFile struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthority     string `yaml:"certificate-authority"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
			TLSServerName            string `yaml:"tls-server-name"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			ClientCertificate     string `yaml:"client-certificate"`
			ClientCertificateData string `yaml:"client-certificate-data"`
			ClientKey             string `yaml:"client-key"`
			ClientKeyData         string `yaml:"client-key-data"`
			Token                 string `yaml:"token"`
			TokenFile             string `yaml:"tokenFile"`
		} `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

// upstream is how the agent reaches one cluster's API server.
type upstream struct {
	server    *url.URL
	transport *http.Transport
	// token returns the bearer token to send ("" when the client
	// certificate authenticates).
	token func() (string, error)
}

// loadKubeconfig reads the context ctxName (the current context when
// empty) of the kubeconfig at path.
func loadKubeconfig(path, ctxName string) (*upstream, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, maxKubeconfig+1)
	n, _ := readFull(f, data)
	if n > maxKubeconfig {
		return nil, fmt.Errorf("kubeconfig %s is larger than %d bytes", path, maxKubeconfig)
	}
	var kc kubeconfigFile
	if err := yaml.Unmarshal(data[:n], &kc); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	base := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	if ctxName == "" {
		ctxName = kc.CurrentContext
	}
	var clusterName, userName string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == ctxName {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
		}
	}
	if !found {
		return nil, fmt.Errorf("kubeconfig %s has no context %q", path, ctxName)
	}
	up := &upstream{token: func() (string, error) { return "", nil }}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	found = false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		if up.server, err = url.Parse(c.Cluster.Server); err != nil || up.server.Host == "" {
			return nil, fmt.Errorf("kubeconfig %s: cluster %q: invalid server %q", path, clusterName, c.Cluster.Server)
		}
		tlsCfg.ServerName = c.Cluster.TLSServerName
		tlsCfg.InsecureSkipVerify = c.Cluster.InsecureSkipTLSVerify
		caPEM, err := dataOrFile(c.Cluster.CertificateAuthorityData, rel(c.Cluster.CertificateAuthority))
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: certificate authority: %w", path, err)
		}
		if caPEM != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(caPEM) {
				return nil, fmt.Errorf("kubeconfig %s: cluster %q: no certificate in its certificate authority", path, clusterName)
			}
			tlsCfg.RootCAs = pool
		}
	}
	if !found {
		return nil, fmt.Errorf("kubeconfig %s has no cluster %q", path, clusterName)
	}
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		certPEM, err := dataOrFile(u.User.ClientCertificateData, rel(u.User.ClientCertificate))
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: client certificate: %w", path, err)
		}
		keyPEM, err := dataOrFile(u.User.ClientKeyData, rel(u.User.ClientKey))
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: client key: %w", path, err)
		}
		if certPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, fmt.Errorf("kubeconfig %s: user %q: %w", path, userName, err)
			}
			tlsCfg.Certificates = []tls.Certificate{pair}
		}
		switch {
		case u.User.Token != "":
			tok := u.User.Token
			up.token = func() (string, error) { return tok, nil }
		case u.User.TokenFile != "":
			up.token = fileToken(rel(u.User.TokenFile))
		}
	}
	up.transport = newTransport(tlsCfg)
	return up, nil
}

// inCluster is the pod's service account: the API server from the
// environment, its CA and the token (re-read, since it rotates).
func inCluster() (*upstream, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("in_cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running in a pod?)")
	}
	caPEM, err := os.ReadFile(filepath.Join(inClusterDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("in_cluster: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("in_cluster: no certificate in ca.crt")
	}
	return &upstream{server: &url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)},
		transport: newTransport(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}),
		token:     fileToken(filepath.Join(inClusterDir, "token"))}, nil
}

// newTransport speaks HTTP/1.1 to the API server, so that upgrades (exec,
// attach, port-forward) pass through as they are. Its connections read
// streams in large pieces (coalesce.go).
func newTransport(tlsCfg *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     tlsCfg,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		DialTLSContext:      dialTLS(tlsCfg),
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

func dataOrFile(data, file string) ([]byte, error) {
	if data != "" {
		return base64.StdEncoding.DecodeString(strings.TrimSpace(data))
	}
	if file != "" {
		return os.ReadFile(file)
	}
	return nil, nil
}

// fileToken reads a token file, at most once a minute.
func fileToken(path string) func() (string, error) {
	var mu sync.Mutex
	var tok string
	var read time.Time
	return func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if tok != "" && time.Since(read) < time.Minute {
			return tok, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		tok, read = strings.TrimSpace(string(b)), time.Now()
		return tok, nil
	}
}

func readFull(f *os.File, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := f.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
