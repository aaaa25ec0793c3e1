package client

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/idfile"
)

// KubeCredential is the user's client certificate and key (PEM) for
// kubectl, as the exec credential plugin hands them over.
type KubeCredential struct {
	CertPEM, KeyPEM []byte
	Expires         time.Time
}

// KubeCredential returns the profile's TLS certificate and its key in
// PKCS#8 PEM (the form client-go reads).
func (p *Profile) KubeCredential() (*KubeCredential, error) {
	keyPEM, err := os.ReadFile(p.Path(fileKey))
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(p.Path(fileTLSCert))
	if err != nil {
		return nil, err
	}
	raw, err := ssh.ParseRawPrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("profile key: %w", err)
	}
	if k, ok := raw.(*ed25519.PrivateKey); ok {
		raw = *k
	}
	der, err := x509.MarshalPKCS8PrivateKey(raw)
	if err != nil {
		return nil, err
	}
	id := idfile.File{PrivateKey: string(keyPEM), TLSCert: string(certPEM)}
	tc, err := id.TLSCertificate()
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(tc.Certificate[0])
	if err != nil {
		return nil, err
	}
	return &KubeCredential{CertPEM: certPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), Expires: leaf.NotAfter}, nil
}

// PickUpApprovedRequest switches the profile to certificates carrying the
// user's newest approved access request when the profile carries no
// usable one yet: after a reviewer approves, the next kubectl call works
// without a new login. It reports whether it switched.
func PickUpApprovedRequest(ctx context.Context, p *Profile) (*Profile, bool, error) {
	c, err := p.APIClient()
	if err != nil {
		return p, false, err
	}
	reqs, err := c.ListAccessRequests(ctx)
	c.Close()
	if err != nil {
		return p, false, err
	}
	now := time.Now()
	var best *access.Request
	for _, r := range reqs {
		if r.Usable(p.User, now) != nil {
			continue
		}
		if slices.Contains(p.Requests, r.ID) {
			return p, false, nil // already carried and still usable
		}
		if best == nil || r.AccessExpires.After(best.AccessExpires) {
			best = r
		}
	}
	if best == nil {
		return p, false, nil
	}
	next, err := UseRequest(ctx, p, best.ID)
	if err != nil {
		return p, false, err
	}
	return next, true, nil
}

// KubeContext is what `warden kube login` writes into a kubeconfig.
type KubeContext struct {
	// Name of the context, cluster and user entries.
	Name string
	// Server is https://PROXY/kube/CLUSTER.
	Server string
	// CAPEM is the cluster's TLS CA (the proxy's certificate's issuer).
	CAPEM []byte
	// Command and Args run the exec credential plugin.
	Command string
	Args    []string
}

// WriteKubeconfig adds (or replaces) kc's cluster, user and context in the
// kubeconfig at path, keeps every other entry, and makes it the current
// context. The file is written atomically, mode 0600.
func WriteKubeconfig(path string, kc KubeContext) error {
	doc := map[string]any{}
	if data, err := os.ReadFile(path); err == nil {
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("kubeconfig %s: %w", path, err)
		}
		if doc == nil {
			doc = map[string]any{}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	doc["apiVersion"], doc["kind"] = "v1", "Config"
	upsert := func(key string, entry map[string]any) {
		list, _ := doc[key].([]any)
		list = slices.DeleteFunc(list, func(e any) bool {
			m, ok := e.(map[string]any)
			return ok && m["name"] == kc.Name
		})
		doc[key] = append(list, entry)
	}
	upsert("clusters", map[string]any{"name": kc.Name, "cluster": map[string]any{
		"server": kc.Server, "certificate-authority-data": base64.StdEncoding.EncodeToString(kc.CAPEM)}})
	args := make([]any, len(kc.Args))
	for i, a := range kc.Args {
		args[i] = a
	}
	upsert("users", map[string]any{"name": kc.Name, "user": map[string]any{"exec": map[string]any{
		"apiVersion": "client.authentication.k8s.io/v1", "command": kc.Command, "args": args,
		"interactiveMode": "Never", "provideClusterInfo": false}}})
	upsert("contexts", map[string]any{"name": kc.Name, "context": map[string]any{"cluster": kc.Name, "user": kc.Name}})
	doc["current-context"] = kc.Name
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return idfile.WriteAtomic(path, out, 0o600)
}

// TLSCAPEM returns the cluster TLS CA the profile trusts.
func (p *Profile) TLSCAPEM() ([]byte, error) { return os.ReadFile(p.Path(fileTLSCA)) }
