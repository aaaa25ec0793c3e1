package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/kubeagent"
	"github.com/warden-sh/warden/internal/service"
)

func newKubeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "kube", Short: "Kubernetes clusters through Warden (kubectl)",
		Long: `Reach Kubernetes clusters through the proxy with plain kubectl.

  warden kube ls                  # the clusters your roles allow
  warden kube login prod          # writes a kubeconfig context "warden-prod"
  kubectl get pods                # kubectl asks warden for your certificate

Each kubectl call runs "warden kube credentials", which hands kubectl your
short-lived Warden certificate (and, once a reviewer approved your access
request, switches to certificates carrying it: no new login needed).
See docs/kubernetes.md.`}
	cmd.AddCommand(newKubeLsCmd(g), newKubeLoginCmd(g), newKubeCredentialsCmd(g))
	return cmd
}

func newKubeLsCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{Use: "ls", Short: "List the Kubernetes clusters you may reach", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			clusters, err := s.api.ListKubeClusters(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return json.NewEncoder(g.io.Out).Encode(clusters)
			}
			rows := make([][]string, len(clusters))
			for i, k := range clusters {
				rows[i] = []string{k.Name, formatLabels(k.Labels)}
			}
			return writeTable(g.io.Out, "CLUSTER\tLABELS", rows)
		}}
	c.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json")
	return c
}

// kubeContextName is the kubeconfig context warden kube login writes.
func kubeContextName(cluster string) string { return "warden-" + cluster }

func newKubeLoginCmd(g *globals) *cobra.Command {
	var kubeconfig, binary string
	c := &cobra.Command{Use: "login CLUSTER", Short: "Point kubectl at a cluster through Warden",
		Long: `Write a kubeconfig context for CLUSTER and make it current.

The context points at the proxy (https://PROXY/kube/CLUSTER), trusts the
cluster's CA, and gets credentials from "warden kube credentials" (an exec
credential plugin): your Warden certificate, short-lived, never written into
the kubeconfig. The kubeconfig is --kubeconfig, else the first file of
$KUBECONFIG, else ~/.kube/config; other entries in it are kept.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			name := args[0]
			clusters, err := s.api.ListKubeClusters(cmd.Context())
			if err != nil {
				return err
			}
			found := false
			for _, k := range clusters {
				found = found || k.Name == name
			}
			if !found {
				// Written anyway: with just-in-time access the context
				// works once a request is approved.
				textf(g.io.Err, "warning: kubernetes cluster %q is not connected or not allowed by your roles now (see: warden kube ls);\nkubectl will be refused until it is (warden request create --roles ROLE to ask for access).\n", name)
			}
			p, err := g.profile()
			if err != nil {
				return err
			}
			caPEM, err := p.TLSCAPEM()
			if err != nil {
				return err
			}
			exe := binary
			if exe == "" {
				if exe, err = os.Executable(); err != nil {
					return err
				}
			}
			args = []string{"kube", "credentials"}
			if g.home != "" {
				home, err := filepath.Abs(g.home)
				if err != nil {
					return err
				}
				args = append(args, "--home", home)
			}
			path := kubeconfig
			if path == "" {
				path = defaultKubeconfig()
			}
			ctxName := kubeContextName(name)
			if err := client.WriteKubeconfig(path, client.KubeContext{Name: ctxName, Server: "https://" + p.Proxy + "/kube/" + name,
				CAPEM: caPEM, Command: exe, Args: args}); err != nil {
				return err
			}
			textf(g.io.Out, "Logged in to kubernetes cluster %q: kubeconfig %s, context %s (now current).\nTry: kubectl auth whoami\n", name, path, ctxName)
			return nil
		}}
	c.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file to write (default: first of $KUBECONFIG, else ~/.kube/config)")
	c.Flags().StringVar(&binary, "binary", "", "warden binary kubectl runs for credentials (default: this one)")
	return c
}

func defaultKubeconfig() string {
	if env := os.Getenv("KUBECONFIG"); env != "" {
		return strings.Split(env, string(os.PathListSeparator))[0]
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".kube", "config")
}

// kubeCredentialTTL caps how long kubectl keeps a credential before it
// asks again (so that an approved request is picked up by long-running
// kubectl processes too).
const kubeCredentialTTL = 10 * time.Minute

func newKubeCredentialsCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "credentials", Short: "Exec credential plugin for kubectl (kubectl runs it)",
		Long: `Print an ExecCredential (client.authentication.k8s.io) with your Warden
certificate and key, for kubectl. warden kube login puts this command in the
kubeconfig; you do not run it yourself. If a reviewer approved one of your
access requests and your certificates do not carry it yet, it switches to
certificates that do first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := g.profile()
			if err != nil {
				return err
			}
			if err := p.CheckValid(time.Now()); err != nil {
				return err
			}
			if next, switched, err := client.PickUpApprovedRequest(cmd.Context(), p); err != nil {
				fmt.Fprintf(g.io.Err, "warden: could not check your access requests: %v\n", err)
			} else if switched {
				p = next
			}
			cred, err := p.KubeCredential()
			if err != nil {
				return err
			}
			exp := time.Now().Add(kubeCredentialTTL)
			if cred.Expires.Before(exp) {
				exp = cred.Expires
			}
			apiVersion := "client.authentication.k8s.io/v1"
			var info struct {
				APIVersion string `json:"apiVersion"`
			}
			if env := os.Getenv("KUBERNETES_EXEC_INFO"); env != "" && json.Unmarshal([]byte(env), &info) == nil && info.APIVersion != "" {
				apiVersion = info.APIVersion
			}
			return json.NewEncoder(g.io.Out).Encode(map[string]any{
				"apiVersion": apiVersion, "kind": "ExecCredential",
				"status": map[string]any{"expirationTimestamp": exp.UTC().Format(time.RFC3339),
					"clientCertificateData": string(cred.CertPEM), "clientKeyData": string(cred.KeyPEM)},
			})
		}}
}

// addKubeStartFlags adds the kube agent's flags to warden start.
func addKubeStartFlags(f *pflag.FlagSet) {
	f.String("kube-cluster", "", "kube agent: name of the Kubernetes cluster it serves (with --kubeconfig or --in-cluster; --labels are its labels)")
	f.String("kubeconfig", "", "kube agent: kubeconfig with the agent's own credentials (need only impersonate; see docs/kubernetes.md)")
	f.String("kube-context", "", "kube agent: context in --kubeconfig (default: its current context)")
	f.Bool("in-cluster", false, "kube agent: use the pod's service account (running inside the cluster)")
}

// applyKubeStartFlags puts warden start's flags into the kube agent's
// settings when the kube service runs.
func applyKubeStartFlags(f *pflag.FlagSet, c *service.Config, labels map[string]string) error {
	if !c.Has(service.Kube) {
		for _, n := range []string{"kube-cluster", "kubeconfig", "kube-context", "in-cluster"} {
			if f.Changed(n) {
				return fmt.Errorf("--%s is for the kube agent: add kube to --services", n)
			}
		}
		return nil
	}
	for flag, dst := range map[string]*string{"proxy": &c.Kube.ProxyAddr, "token": &c.Kube.Token, "token-file": &c.Kube.TokenFile,
		"ca-pin": &c.Kube.CAPin, "name": &c.Kube.Name} {
		if f.Changed(flag) {
			*dst, _ = f.GetString(flag)
		}
	}
	if f.Changed("insecure") {
		c.Kube.Insecure, _ = f.GetBool("insecure")
	}
	if c.Kube.Token == "" && c.Kube.TokenFile == "" {
		c.Kube.Token = c.Node.Token // from WARDEN_TOKEN
	}
	if !f.Changed("kube-cluster") {
		return nil
	}
	name, _ := f.GetString("kube-cluster")
	kc, _ := f.GetString("kubeconfig")
	kctx, _ := f.GetString("kube-context")
	in, _ := f.GetBool("in-cluster")
	if kc == "" && !in {
		return errors.New("--kube-cluster needs --kubeconfig FILE or --in-cluster")
	}
	c.Kube.Clusters = append(c.Kube.Clusters, kubeagent.ClusterSettings{Name: name, Labels: labels, Kubeconfig: kc, Context: kctx, InCluster: in})
	return nil
}

// joinExtra is what the join command printed by tokens add needs besides
// the token for a token type: a kube agent names its cluster and the
// kubeconfig with its own credentials.
func joinExtra(tokenType string) string {
	if tokenType == "kube" {
		return " \\\n      --kube-cluster NAME --kubeconfig agent.kubeconfig   # credentials that may only impersonate: docs/kubernetes.md"
	}
	return ""
}
