package cli

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/krl"
	"github.com/warden-sh/warden/internal/wire"
)

func newCACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The cluster's certificate authorities"}
	var typ string
	export := &cobra.Command{
		Use:   "export --type user|host",
		Short: "Print a CA public key: user for sshd's TrustedUserCAKeys, host for clients' known_hosts",
		Long: `Print one of the cluster's SSH CA public keys.

  --type user   the line for an OpenSSH server's TrustedUserCAKeys file: sshd
                then accepts Warden user certificates (docs/agentless.md)
  --type host   a @cert-authority line for known_hosts: ssh then trusts the
                host certificates Warden issues (warden sign --host)`,
		Example: "  warden ca export --type user > /etc/ssh/warden_user_ca.pub\n  warden ca export --type host",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.requestClient()
			if err != nil {
				return err
			}
			defer c.Close()
			ping, err := c.Ping(cmd.Context())
			if err != nil {
				return err
			}
			switch typ {
			case "user":
				if ping.UserCA == "" {
					return errors.New("this proxy does not publish its user CA (an older version?)")
				}
				fmt.Fprintln(g.io.Out, ping.UserCA)
			case "host":
				if ping.HostCA == "" {
					return errors.New("this proxy does not publish its host CA (an older version?)")
				}
				fmt.Fprintln(g.io.Out, "@cert-authority * "+ping.HostCA)
			default:
				return fmt.Errorf("--type must be user or host, not %q", typ)
			}
			return nil
		},
	}
	export.Flags().StringVar(&typ, "type", "user", "which CA: user or host")
	cmd.AddCommand(export)
	return cmd
}

func newSignCmd(g *globals) *cobra.Command {
	var (
		host, pubkey, out, identity string
		principals                  []string
		ttl                         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "sign --host NAME --pubkey FILE [--principals a,b] [--ttl 720h] [-o CERT] [--krl-identity FILE]",
		Short: "Issue a host certificate for a server's own sshd host key (agentless servers)",
		Long: `Issue a host certificate for an OpenSSH server's host key, signed by the
cluster's host CA. With it in sshd_config (HostCertificate), Warden clients
and the proxy verify the server by the CA: no trust on first use.

NAME is always a principal; add the other names clients use (its DNS name,
its address) with --principals. The certificate expires after --ttl
(default 30 days): renew it before then by running the same command again
(a monthly cron job or systemd timer on a machine with admin access), then
reload sshd. warden nodes ls shows the servers; docs/agentless.md has the
whole setup.

For a server registered with warden nodes add --agentless, --krl-identity
FILE also writes the server's identity for warden krl sync (which fetches
the KRL with the same host key): an X.509 certificate for that key and the
cluster's CA. It holds no secret.`,
		Example: "  warden sign --host web1 --principals web1.example.com,10.0.0.5 \\\n" +
			"      --pubkey /etc/ssh/ssh_host_ed25519_key.pub -o /etc/ssh/ssh_host_ed25519_key-cert.pub",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if host == "" || pubkey == "" {
				return errors.New("--host NAME and --pubkey FILE are required")
			}
			pub, err := readBounded(pubkey, 16<<10)
			if err != nil {
				return err
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.SignHostCert(cmd.Context(), wire.SignHostRequest{Name: host, Principals: principals, PublicKey: string(pub), TTL: ttl})
			if err != nil {
				return err
			}
			if identity != "" {
				if resp.TLSCert == "" {
					return fmt.Errorf("no KRL identity: %q is not registered as an agentless server (warden nodes add %s --addr HOST:22 --agentless)", host, host)
				}
				ping, err := c.Ping(cmd.Context())
				if err != nil {
					return err
				}
				id := krlIdentity{Proxy: c.Addr(), Name: host, TLSCert: resp.TLSCert, TLSCA: resp.TLSCA, UserCA: ping.UserCA}
				b, _ := json.MarshalIndent(id, "", "  ")
				if err := writeFileAtomic(identity, append(b, '\n'), 0o644); err != nil {
					return err
				}
			}
			if out != "" {
				if err := writeFileAtomic(out, []byte(resp.Cert+"\n"), 0o644); err != nil {
					return err
				}
				textf(g.io.Err, "host certificate for %s (principals %s) written to %s\n", host, strings.Join(resp.Principals, ","), out)
			} else {
				fmt.Fprintln(g.io.Out, resp.Cert)
			}
			textf(g.io.Err, "It expires %s (in %s): renew it before then with this same command, then reload sshd.\n",
				resp.Expires.Local().Format(time.RFC1123), humanDuration(time.Until(resp.Expires)))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&host, "host", "", "the server's name in Warden (always a principal)")
	f.StringSliceVar(&principals, "principals", nil, "more names clients reach the server by (DNS names, addresses)")
	f.StringVar(&pubkey, "pubkey", "", "the sshd host public key, e.g. /etc/ssh/ssh_host_ed25519_key.pub")
	f.DurationVar(&ttl, "ttl", 30*24*time.Hour, "how long the certificate is valid")
	f.StringVarP(&out, "output", "o", "", "write the certificate to this file (default: standard output)")
	f.StringVar(&identity, "krl-identity", "", "also write the server's KRL identity (for warden krl sync) to this file")
	return cmd
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// writeFileAtomic writes a file whole or not at all: a temporary file in
// the same directory, synced, then renamed over the old one. sshd reading
// RevokedKeys never sees half a KRL.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func newNodesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "nodes", Short: "Manage servers: agentless servers, and all nodes with how they are reached (admin)"}
	var addr, labels, format string
	var agentless bool
	add := &cobra.Command{
		Use:   "add NAME --addr HOST:22 --agentless [--labels env=prod]",
		Short: "Register a server Warden reaches through its own sshd (no agent installed)",
		Long: `Register an agentless server: an OpenSSH sshd that trusts Warden's user CA
(warden ca export --type user) and presents a Warden host certificate
(warden sign --host). It is listed by warden ls and the web UI like any node;
users reach it through the proxy, which decides with their roles, connects
to sshd with a one-minute certificate for that login, and records the
session. Running it again updates the address and labels.

The same as a resource for warden apply:
  kind: agentless_node
  metadata: {name: web1}
  spec:
    addr: 10.0.0.5:22
    labels: {env: prod}`,
		Example: "  warden nodes add web1 --addr 10.0.0.5:22 --labels env=prod --agentless",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !agentless {
				return errors.New("only agentless servers are added here (--agentless); a server with the agent joins itself: warden tokens add")
			}
			n := &wire.AgentlessNode{Kind: wire.KindAgentlessNode, Spec: wire.AgentlessSpec{Addr: addr}}
			n.Metadata.Name = args[0]
			if labels != "" {
				m, err := parseLabels(labels)
				if err != nil {
					return err
				}
				n.Spec.Labels = m
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.UpsertAgentlessNode(cmd.Context(), n); err != nil {
				return err
			}
			textf(g.io.Out, "agentless server %q registered at %s\n", n.Metadata.Name, addr)
			return nil
		},
	}
	add.Flags().StringVar(&addr, "addr", "", "sshd's address as the proxy reaches it, host:port")
	add.Flags().StringVar(&labels, "labels", "", "labels, e.g. env=prod,team=a")
	add.Flags().BoolVar(&agentless, "agentless", false, "the server runs no Warden agent: the proxy connects to its sshd")
	ls := &cobra.Command{Use: "ls", Short: "List nodes: agent or agentless, reachable, and the age of each agentless server's KRL", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			nodes, err := c.ListNodes(cmd.Context(), nil)
			if err != nil {
				return err
			}
			al, err := c.ListAgentlessNodes(cmd.Context())
			if err != nil {
				return err
			}
			if format != "text" {
				_, err := printAs(g.io.Out, format, map[string]any{"nodes": nodes, "agentless": al})
				return err
			}
			var rows [][]string
			for _, n := range nodes {
				if n.Agentless {
					continue
				}
				rows = append(rows, []string{n.Name, "agent", "yes (tunnel)", formatLabels(n.Labels), "-"})
			}
			for _, n := range al {
				reach, age := "yes", "never fetched"
				if !n.Status.Reachable {
					reach = "no: " + n.Status.Error
				}
				if !n.Status.KRLFetched.IsZero() {
					age = humanDuration(time.Since(n.Status.KRLFetched)) + " ago"
				}
				rows = append(rows, []string{n.Metadata.Name, "agentless " + n.Spec.Addr, reach, formatLabels(n.Spec.Labels), age})
			}
			return writeTable(g.io.Out, "NODE\tKIND\tREACHABLE\tLABELS\tKRL FETCHED", rows)
		}}
	ls.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	rm := removeCmd(g, "rm NAME", "Remove an agentless server", (*api.Client).DeleteAgentlessNode, func(w io.Writer, name string) {
		textf(w, "agentless server %q removed\n", name)
	})
	cmd.AddCommand(add, ls, rm)
	return cmd
}

// krlIdentity is an agentless server's identity for warden krl sync (no
// secret: the key is sshd's host key, read from its own file).
type krlIdentity struct {
	Proxy   string `json:"proxy"`
	Name    string `json:"name"`
	TLSCert string `json:"tls_cert"`
	TLSCA   string `json:"tls_ca"`
	// UserCA is the user CA's key (authorized_keys line), for the
	// fail-closed KRL.
	UserCA string `json:"user_ca"`
}

// krlSyncOptions configure warden krl sync (and warden start --services krl).
type krlSyncOptions struct {
	identity, hostKey, out string
	maxStale               time.Duration
}

func (o *krlSyncOptions) flags(f interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}) {
	f.StringVar(&o.identity, "krl-identity", "/etc/ssh/warden-krl.json", "the server's KRL identity (warden sign --host ... --krl-identity)")
	f.StringVar(&o.hostKey, "host-key", "/etc/ssh/ssh_host_ed25519_key", "sshd's host private key the identity certifies")
	f.StringVar(&o.out, "krl-file", "/etc/ssh/warden.krl", "where to keep the KRL (sshd_config: RevokedKeys)")
	f.DurationVar(&o.maxStale, "krl-max-stale", 0, "fail closed: once the KRL could not be refreshed for this long, "+
		"write one that revokes every Warden certificate (0: keep the last one)")
}

func newKRLCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "krl [-o FILE]",
		Short: "Print the KRL (OpenSSH key revocation list) of Warden certificates that must no longer be accepted",
		Long: `Print the cluster's key revocation list in OpenSSH's format (sshd_config
RevokedKeys; ssh-keygen -Q -f FILE CERT checks a certificate against it). It
revokes every certificate Warden would refuse now: locked users, roles,
access requests and MFA devices; removed or reset users; revoked or expired
access requests. On agentless servers, warden krl sync keeps it current.`,
		Example: "  warden krl -o revoked.krl && ssh-keygen -Q -f revoked.krl ~/.warden/keys/*-cert.pub",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				if f, ok := g.io.Out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return errors.New("the KRL is binary: give -o FILE, or redirect standard output")
				}
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			k, err := c.FetchKRL(cmd.Context(), "", 0)
			if err != nil {
				return err
			}
			if out == "" {
				_, err = g.io.Out.Write(k.Data)
				return err
			}
			if err := writeFileAtomic(out, k.Data, 0o644); err != nil {
				return err
			}
			textf(g.io.Err, "KRL written to %s: %d serials, %d key IDs revoked\n", out, k.Serials, k.KeyIDs)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the KRL to this file (atomically)")
	var o krlSyncOptions
	sync := &cobra.Command{
		Use:   "sync [--krl-identity FILE] [--host-key FILE] [--krl-file FILE]",
		Short: "Keep sshd's RevokedKeys file current (on an agentless server)",
		Long: `Run on an agentless server: fetch the KRL with the server's own identity
(its sshd host key and the certificate from warden sign --krl-identity), and
rewrite --krl-file atomically whenever it changes, within seconds of a lock.
sshd reads RevokedKeys at every login: no reload is needed. Also runs as
warden start --services krl.

If the proxy cannot be reached the last KRL stays in force and every failure
is logged as an error; with --krl-max-stale the file is replaced, once that
long has passed, by a KRL revoking every certificate of the cluster's user
CA (fail closed) until a fetch succeeds.`,
		Example: "  warden krl sync --krl-identity /etc/ssh/warden-krl.json --host-key /etc/ssh/ssh_host_ed25519_key \\\n" +
			"      --krl-file /etc/ssh/warden.krl",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKRLSync(cmd.Context(), g.logger(), o)
		},
	}
	o.flags(sync.Flags())
	cmd.AddCommand(sync)
	return cmd
}

// krlWait is how long one long poll of the KRL waits for a change.
const krlWait = 25 * time.Second

// runKRLSync keeps o.out equal to the cluster's KRL until ctx ends.
func runKRLSync(ctx context.Context, log *slog.Logger, o krlSyncOptions) error {
	c, userCA, err := krlClient(o)
	if err != nil {
		return err
	}
	defer c.Close()
	log = log.With("service", "krl", "file", o.out)
	var last string
	lastOK := time.Now()
	backoff := time.Second
	failedClosed := false
	for {
		k, err := c.FetchKRL(ctx, last, krlWait)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			if _, perr := krl.Parse(k.Data); perr != nil {
				err = fmt.Errorf("the proxy sent an invalid KRL: %w", perr)
			}
		}
		if err != nil {
			log.Error("KRL refresh failed: sshd keeps the last KRL", "err", err, "stale_for", time.Since(lastOK).Round(time.Second))
			if o.maxStale > 0 && time.Since(lastOK) > o.maxStale && !failedClosed {
				if werr := writeFileAtomic(o.out, revokeAll(userCA), 0o644); werr != nil {
					log.Error("cannot write the fail-closed KRL", "err", werr)
				} else {
					failedClosed, last = true, ""
					log.Error("KRL stale beyond --krl-max-stale: every Warden certificate is now refused by sshd until a refresh succeeds")
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 15*time.Second)
			continue
		}
		backoff, lastOK = time.Second, time.Now()
		if k.SHA256 == last && !failedClosed {
			continue
		}
		if err := writeFileAtomic(o.out, k.Data, 0o644); err != nil {
			log.Error("cannot write the KRL", "err", err)
			continue
		}
		last, failedClosed = k.SHA256, false
		log.Info("KRL updated", "serials", k.Serials, "key_ids", k.KeyIDs)
	}
}

// revokeAll is a KRL revoking every certificate of the user CA with a
// serial (Warden's serials are random and never 0).
func revokeAll(userCA ssh.PublicKey) []byte {
	return (&krl.KRL{Version: uint64(time.Now().UnixMilli()), Generated: time.Now(), Comment: "warden: fail closed (KRL stale)",
		Certs: []krl.CertSection{{CA: userCA, Ranges: [][2]uint64{{1, 1<<64 - 1}}}}}).Marshal()
}

// krlClient is the API client of an agentless server's KRL identity.
func krlClient(o krlSyncOptions) (*api.Client, ssh.PublicKey, error) {
	b, err := readBounded(o.identity, 64<<10)
	if err != nil {
		return nil, nil, err
	}
	var id krlIdentity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, nil, fmt.Errorf("%s: %v", o.identity, err)
	}
	keyPEM, err := readBounded(o.hostKey, 64<<10)
	if err != nil {
		return nil, nil, err
	}
	raw, err := ssh.ParseRawPrivateKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", o.hostKey, err)
	}
	signer, ok := raw.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: unsupported key type", o.hostKey)
	}
	cert, err := certWithKey([]byte(id.TLSCert), signer)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", o.identity, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(id.TLSCA)) {
		return nil, nil, fmt.Errorf("%s: no CA certificate", o.identity)
	}
	c, err := api.NewClient(api.ClientConfig{Addr: id.Proxy, RootCAs: pool, Certificate: &cert})
	if err != nil {
		return nil, nil, err
	}
	userCA, _, _, _, err := ssh.ParseAuthorizedKey([]byte(id.UserCA))
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("%s: the user CA: %v", o.identity, err)
	}
	return c, userCA, nil
}

// certWithKey pairs a PEM certificate with the key it certifies.
func certWithKey(certPEM []byte, key crypto.Signer) (tls.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return tls.Certificate{}, errors.New("no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return tls.Certificate{}, err
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pk, ok := leaf.PublicKey.(equaler); !ok || !pk.Equal(key.Public()) {
		return tls.Certificate{}, errors.New("the certificate is not for this host key (is --host-key the key that was signed?)")
	}
	return tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key, Leaf: leaf}, nil
}

// splitAgentless takes the agentless_node documents out of a YAML stream
// (warden apply), leaving blank lines in their place so that the line
// numbers of the other documents' errors stay true.
func splitAgentless(data []byte) ([]byte, []*wire.AgentlessNode, error) {
	var nodes []*wire.AgentlessNode
	rest, err := splitDocs(data, func(kind, doc string, line int) (bool, error) {
		if kind != wire.KindAgentlessNode {
			return false, nil
		}
		var n wire.AgentlessNode
		if err := yaml.UnmarshalStrict([]byte(doc), &n); err != nil {
			return false, fmt.Errorf("agentless_node (document at line %d): %v", line, err)
		}
		if n.Metadata.Name == "" || n.Spec.Addr == "" {
			return false, fmt.Errorf("agentless_node (document at line %d): metadata.name and spec.addr are required", line)
		}
		n.Status = nil
		nodes = append(nodes, &n)
		return true, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return rest, nodes, nil
}
