package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/service"
)

func newStartCmd(g *globals) *cobra.Command {
	var (
		configPath string
		services   string
		labels     string
		labelCmds  []string
		cfg        service.Config
		krlSync    krlSyncOptions
	)
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run Warden services (all-in-one by default)",
		Long: `Run Warden services in this process.

With no arguments, start runs the auth, proxy and node services together on
127.0.0.1 with an embedded SQLite store in the data directory. The cluster's
certificate authorities are created on first start and reused afterwards.

Run a node on a server and join it to an existing cluster (the token in a
file or in WARDEN_TOKEN, where ps does not show it; warden tokens add prints
the command):
  warden start --services node --proxy PROXY:3080 --token-file join-token \
      --ca-pin sha256:... --labels env=prod,team=a

A YAML file (--config) can hold the same settings; flags override it:
  cluster_name: example
  data_dir: /var/lib/warden
  services: [auth, proxy, node]
  proxy:
    listen: 0.0.0.0:3080
    public_addr: warden.example.com:3080
  node:
    name: web1
    labels: {env: prod}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := &service.Config{}
			if configPath != "" {
				loaded, err := service.LoadConfig(configPath)
				if err != nil {
					return err
				}
				c = loaded
			}
			f := cmd.Flags()
			if f.Changed("cluster-name") {
				c.ClusterName = cfg.ClusterName
			}
			if f.Changed("data-dir") || c.DataDir == "" {
				c.DataDir = g.dataDir
			}
			if services == "krl" {
				// An agentless server's KRL sync (docs/agentless.md).
				return runKRLSync(cmd.Context(), g.logger(), krlSync)
			}
			if services != "" {
				c.Services = splitList(services)
			}
			for flag, dst := range map[string]*string{
				"proxy-listen": &c.Proxy.Listen, "public-addr": &c.Proxy.PublicAddr, "metrics-addr": &c.Proxy.MetricsAddr,
				"node-listen": &c.Node.Listen, "name": &c.Node.Name,
				"proxy": &c.Node.ProxyAddr, "token": &c.Node.Token, "token-file": &c.Node.TokenFile, "ca-pin": &c.Node.CAPin,
				"session-cgroups": &c.Node.SessionCgroups,
				"peer-listen":     &c.Proxy.PeerListen, "peer-addr": &c.Proxy.PeerAddr,
			} {
				if f.Changed(flag) {
					v, _ := f.GetString(flag)
					*dst = v
				}
			}
			// The join token from the environment: unlike a flag, ps does
			// not show it. Not passed on to the commands this process runs.
			if tok := os.Getenv(tokenEnv); tok != "" {
				if c.Node.Token == "" && c.Node.TokenFile == "" {
					c.Node.Token = strings.TrimSpace(tok)
				}
				os.Unsetenv(tokenEnv)
			}
			if f.Changed("auth-listen") {
				c.Auth.Listen, _ = f.GetString("auth-listen")
			}
			if f.Changed("auth-server") {
				c.Proxy.AuthServers, _ = f.GetStringArray("auth-server")
			}
			if c.Has(service.Proxy) && !c.Has(service.Auth) {
				// A proxy running apart joins with the join flags.
				if c.Proxy.Token == "" && c.Proxy.TokenFile == "" {
					c.Proxy.Token, c.Proxy.TokenFile = c.Node.Token, c.Node.TokenFile
					c.Node.Token, c.Node.TokenFile = "", ""
				}
				if c.Proxy.CAPin == "" {
					c.Proxy.CAPin = c.Node.CAPin
				}
				if c.Proxy.Name == "" && f.Changed("name") {
					c.Proxy.Name = c.Node.Name
				}
			}
			if f.Changed("insecure") {
				c.Node.Insecure = cfg.Node.Insecure
			}
			if f.Changed("tunnel-only") {
				c.Node.TunnelOnly = cfg.Node.TunnelOnly
			}
			if labels != "" {
				m, err := parseLabels(labels)
				if err != nil {
					return err
				}
				c.Node.Labels = m
			}
			for _, lc := range labelCmds {
				parsed, err := nodeagent.ParseLabelCommand(lc)
				if err != nil {
					return err
				}
				c.Node.Commands = append(c.Node.Commands, parsed)
			}
			if err := applyKubeStartFlags(f, c, c.Node.Labels); err != nil {
				return err
			}
			if err := c.CheckAndSetDefaults(); err != nil {
				return err
			}
			log := g.logger()
			p, err := service.Start(cmd.Context(), c, log)
			if err != nil {
				return err
			}
			defer p.Close()
			printNextSteps(g, c, p)
			return p.Wait(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", "", "YAML configuration file")
	f.StringVar(&cfg.ClusterName, "cluster-name", "warden", "cluster name (first start only)")
	f.StringVar(&services, "services", "", "comma-separated services to run: auth,proxy,node,kube (default auth,proxy,node); or krl alone, on an agentless server (warden krl sync)")
	krlSync.flags(f)
	f.String("proxy-listen", service.DefaultProxyListen, "the proxy's one address: HTTPS API, SSH jump host and node tunnels")
	f.String("public-addr", "", "address users and nodes use to reach the proxy (default: --proxy-listen)")
	f.String("metrics-addr", service.DefaultMetricsAddr, `where Prometheus metrics are served (plain HTTP, GET /metrics; not on the public port), or "off"`)
	f.String("auth-listen", service.DefaultAuthListen, "where auth serves its API when it runs without the proxy (--services auth)")
	f.StringArray("auth-server", nil, "an auth server's address host:port, for a proxy that runs without auth (repeatable: the next is used when one is down)")
	f.String("peer-listen", "", "turn proxy peering on: other proxies connect here over mutual TLS (docs/postgres.md)")
	f.String("peer-addr", "", "the address peers dial (default: --peer-listen; needed when it is a wildcard)")
	f.String("node-listen", "", "also serve SSH directly on this address (default: none; nodes are reached through the proxy)")
	f.String("name", "", "node name (default: host name)")
	f.StringVar(&labels, "labels", "", "node labels, e.g. env=prod,team=a")
	f.StringArrayVar(&labelCmds, "label-cmd", nil, "dynamic node label NAME=PERIOD:COMMAND, e.g. kernel=1m:uname -r (repeatable)")
	f.String("proxy", "", "proxy address to join (node only)")
	f.String("token", "", "join token (node only, first start); ps shows it to every user of the machine: prefer --token-file or "+tokenEnv)
	f.String("token-file", "", "file holding the join token (node only, first start; env "+tokenEnv+" holds the token itself)")
	f.String("ca-pin", "", "expected cluster CA fingerprint sha256:... (node only, first start)")
	f.BoolVar(&cfg.Node.Insecure, "insecure", false, "join without checking the CA pin (testing only)")
	f.String("session-cgroups", "auto", "auto: each session's processes in a cgroup of their own where the node can (root, cgroup v2), so a lock kills all of them, nohup and setsid jobs included; off: process groups only (node only)")
	addKubeStartFlags(f)
	f.BoolVar(&cfg.Node.TunnelOnly, "tunnel-only", false, "carry sessions inside the node's one tunnel instead of a connection per session dialed out to the proxy (slower; node only)")
	return cmd
}

// tokenEnv is the environment variable that may hold a node's join token.
const tokenEnv = "WARDEN_TOKEN"

func printNextSteps(g *globals, c *service.Config, p *service.Process) {
	w := g.io.Err
	if p.Auth() == nil && c.Has(service.Proxy) {
		textf(w, "\nProxy %q is running at %s (HTTPS API, SSH jump host, node tunnels), calling auth at %s.\n  data directory: %s\n",
			c.Proxy.Name, p.ProxyAddr(), strings.Join(c.Proxy.AuthServers, ", "), c.DataDir)
		return
	}
	if p.Auth() != nil && !c.Has(service.Proxy) {
		textf(w, "\nWarden auth for cluster %q is serving its API at %s (for proxies and admin commands; no proxy in this process).\n  data directory: %s\n",
			c.ClusterName, p.ProxyAddr(), c.DataDir)
		return
	}
	if p.Auth() == nil && p.Node() == nil {
		textf(w, "\nKube agent %q is connected to the proxy at %s (no inbound port needed).\n  data directory: %s\n", c.Kube.Name, c.Kube.ProxyAddr, c.DataDir)
		return
	}
	if p.Auth() == nil {
		textf(w, "\nNode %q is connected to the proxy at %s (no inbound port needed).\n  data directory: %s\n", c.Node.Name, c.Node.ProxyAddr, c.DataDir)
		return
	}
	textf(w, `
Warden cluster %q is running.
  proxy:             %s (HTTPS API, SSH jump host, node tunnels)
  data directory:    %s
`, c.ClusterName, p.ProxyAddr(), c.DataDir)
	if m := p.MetricsAddr(); m != "" {
		textf(w, "  metrics:           http://%s/metrics\n", m)
	}
	if p.Node() != nil {
		textf(w, "  node:              %s (reached through the proxy)\n", c.Node.Name)
	}
	// Admin commands find the admin identity in the data directory; another
	// terminal may not have this one's flag or environment.
	dataDirFlag := ""
	if c.DataDir != service.DefaultDataDir() || os.Getenv("WARDEN_DATA_DIR") != "" {
		dataDirFlag = " --data-dir " + c.DataDir
	}
	textf(w, `
Next steps (in another terminal, as the same OS user):
  warden%s users add developer --roles access --logins dev
  warden signup ...   (the command users add prints; it asks for the token and logs you in)
  warden ls
  warden ssh dev@%s
Later: warden login --proxy %s --user developer

`, dataDirFlag, c.Node.Name, p.ProxyAddr())
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseLabels(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range splitList(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q must look like key=value", kv)
		}
		m[k] = v
	}
	return m, nil
}
