package bot

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/wire"
)

// Files an output keeps for kubectl.
const (
	KubeconfigFile = "kubeconfig"
	// KubeKeyFile is the output's key in PKCS#8 PEM (the form client-go
	// reads; the profile's "key" is OpenSSH's). The key never changes
	// across renewals, only tls.crt does, so the kubeconfig names both by
	// path and is not rewritten for a renewal.
	KubeKeyFile = "tls.key"
	tlsCertFile = "tls.crt"
)

// writeKube writes the output's kubectl files: tls.key, and a kubeconfig
// with one context per Kubernetes cluster the output's roles may reach now
// (named as the cluster, the first by name current), each pointing at
// https://PROXY/kube/CLUSTER with the cluster's TLS CA and the output's
// certificate files. No cluster: no kubeconfig (an old one is kept).
func (b *runner) writeKube(ctx context.Context, dir string) ([]string, error) {
	p, err := client.LoadProfile(dir)
	if err != nil {
		return nil, err
	}
	c, err := p.APIClient()
	if err != nil {
		return nil, err
	}
	clusters, err := c.ListKubeClusters(ctx)
	c.Close()
	if err != nil {
		return nil, fmt.Errorf("list kubernetes clusters: %w", err)
	}
	if len(clusters) == 0 {
		return nil, nil
	}
	cred, err := p.KubeCredential()
	if err != nil {
		return nil, err
	}
	caPEM, err := p.TLSCAPEM()
	if err != nil {
		return nil, err
	}
	if err := idfile.WriteAtomic(filepath.Join(dir, KubeKeyFile), cred.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	data, err := Kubeconfig(p.Proxy, abs, caPEM, clusters)
	if err != nil {
		return nil, err
	}
	if err := idfile.WriteAtomic(filepath.Join(dir, KubeconfigFile), data, 0o600); err != nil {
		return nil, err
	}
	names := make([]string, len(clusters))
	for i, k := range clusters {
		names[i] = k.Name
	}
	return names, nil
}

// Kubeconfig is an output's kubeconfig for clusters (sorted by name, as
// auth lists them): one cluster, user and context entry each, named as
// the cluster; the first is the current context.
func Kubeconfig(proxy, dir string, caPEM []byte, clusters []wire.KubeCluster) ([]byte, error) {
	type named struct {
		Name    string         `yaml:"name"`
		Cluster map[string]any `yaml:"cluster,omitempty"`
		User    map[string]any `yaml:"user,omitempty"`
		Context map[string]any `yaml:"context,omitempty"`
	}
	var cl, users, ctxs []named
	for _, k := range clusters {
		cl = append(cl, named{Name: k.Name, Cluster: map[string]any{"server": "https://" + proxy + "/kube/" + k.Name,
			"certificate-authority-data": base64.StdEncoding.EncodeToString(caPEM)}})
		users = append(users, named{Name: k.Name, User: map[string]any{
			"client-certificate": filepath.Join(dir, tlsCertFile), "client-key": filepath.Join(dir, KubeKeyFile)}})
		ctxs = append(ctxs, named{Name: k.Name, Context: map[string]any{"cluster": k.Name, "user": k.Name}})
	}
	doc := struct {
		Header  string  `yaml:"apiVersion"`
		Kind    string  `yaml:"kind"`
		Current string  `yaml:"current-context"`
		Cl      []named `yaml:"clusters"`
		Users   []named `yaml:"users"`
		Ctxs    []named `yaml:"contexts"`
	}{"v1", "Config", clusters[0].Name, cl, users, ctxs}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Warden bot output: kept by warden bot start (certificates renew in place).\n"), out...), nil
}
