package bot

import (
	"encoding/base64"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/warden-sh/warden/internal/wire"
)

func TestKubeconfig(t *testing.T) {
	data, err := Kubeconfig("proxy.example:3080", "/out", []byte("CA PEM"), []wire.KubeCluster{{Name: "dev"}, {Name: "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string
		Current    string `yaml:"current-context"`
		Clusters   []struct {
			Name    string
			Cluster struct {
				Server string
				CA     string `yaml:"certificate-authority-data"`
			}
		}
		Users []struct {
			Name string
			User map[string]string
		}
		Contexts []struct {
			Name    string
			Context struct{ Cluster, User string }
		}
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if doc.APIVersion != "v1" || doc.Kind != "Config" || doc.Current != "dev" || len(doc.Clusters) != 2 || len(doc.Users) != 2 || len(doc.Contexts) != 2 {
		t.Fatalf("kubeconfig:\n%s", data)
	}
	c := doc.Clusters[1]
	if c.Name != "prod" || c.Cluster.Server != "https://proxy.example:3080/kube/prod" || c.Cluster.CA != base64.StdEncoding.EncodeToString([]byte("CA PEM")) {
		t.Errorf("cluster entry: %+v", c)
	}
	// Certificate files by path only: a renewal needs no rewrite, and no
	// key material is copied into the kubeconfig.
	want := map[string]string{"client-certificate": "/out/tls.crt", "client-key": "/out/tls.key"}
	if u := doc.Users[1].User; len(u) != 2 || u["client-certificate"] != want["client-certificate"] || u["client-key"] != want["client-key"] {
		t.Errorf("user entry: %v", u)
	}
	if x := doc.Contexts[1]; x.Name != "prod" || x.Context.Cluster != "prod" || x.Context.User != "prod" {
		t.Errorf("context entry: %+v", x)
	}
}
