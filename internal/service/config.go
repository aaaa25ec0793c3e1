// Package service is wiring only: the `warden start` configuration, and
// which services (auth, proxy, node agent) a process runs, with their
// listeners. What a node runs lives in nodeagent.
package service

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/warden-sh/warden/internal/kubeagent"
	"github.com/warden-sh/warden/internal/node"
	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/notify"
)

// Service names.
const (
	Auth  = "auth"
	Proxy = "proxy"
	Node  = "node"
	// Kube is the kube agent (internal/kubeagent).
	Kube = "kube"
)

// Config is the `warden start` configuration (YAML file and flags).
type Config struct {
	ClusterName string   `yaml:"cluster_name"`
	DataDir     string   `yaml:"data_dir"`
	Services    []string `yaml:"services"`
	LogLevel    string   `yaml:"log_level"`
	Auth        AuthConfig
	Proxy       ProxyConfig
	Node        nodeagent.Settings
	// Kube is the kube agent's configuration (services: [kube]).
	Kube kubeagent.Settings

	// Storage is where auth keeps state and the audit log (storage.go).
	Storage StorageConfig `yaml:"storage"`
}

// AuthConfig configures the auth service.
type AuthConfig struct {
	// Listen is where auth serves its API (HTTPS, mutual TLS) when it runs
	// without the proxy in its process (--services auth): for proxies,
	// nodes' calls through them, and admin commands. Default
	// DefaultAuthListen. With the proxy in the process, the API is served
	// on the proxy's port and this is unused.
	Listen string `yaml:"listen"`
	// DefaultTTL is the user certificate TTL when none is requested.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// NodeCertTTL is the validity of node certificates (default 24h);
	// nodes renew them in the last third of their life.
	NodeCertTTL time.Duration `yaml:"node_cert_ttl"`
	// Notifications are webhooks told about access requests (Slack
	// incoming-webhook compatible, or generic JSON).
	Notifications []notify.Target `yaml:"notifications"`
	// RequestPendingTTL is how long unreviewed access requests live
	// (default 1h).
	RequestPendingTTL time.Duration `yaml:"request_pending_ttl"`
	// Retention deletes older audit events and recordings (days; 0 keeps
	// them forever). Deletions are audited and leave the chain verifiable.
	Retention RetentionConfig `yaml:"retention"`
	// AuditSink copies every audit event to a JSON-lines file and/or a
	// webhook, in order, with retries and no loss across restarts.
	AuditSink AuditSinkConfig `yaml:"audit_sink"`
	// AuditSigningKey is the Ed25519 key file (PKCS#8 PEM) that signs
	// checkpoints of the audit log; made on first start (default
	// DATA/audit-signing-key.pem). Keep it from whoever owns the database.
	AuditSigningKey string `yaml:"audit_signing_key"`
	// CheckpointInterval is how often a signed checkpoint is appended to
	// the audit log (default 10m).
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// WebAuthn is the passkeys' relying party; by default its RP ID is
	// the host of proxy.public_addr and its origin https://public_addr.
	WebAuthn WebAuthnConfig `yaml:"webauthn"`
	// RequirePasskey: local users must sign in with a passkey (or
	// security key); password and TOTP alone are refused, and a user
	// without one is sent to register one in the web UI.
	RequirePasskey bool `yaml:"require_passkey"`
	// RequireSessionMFA: every new session to any node needs a fresh MFA
	// check (per-session MFA, docs/session-mfa.md), as if every role set
	// require_session_mfa.
	RequireSessionMFA bool `yaml:"require_session_mfa"`
}

// WebAuthnConfig overrides the relying party passkeys are bound to.
type WebAuthnConfig struct {
	// RPID is a domain: the proxy's host name or a parent domain of it.
	RPID string `yaml:"rp_id"`
	// Origins are the web origins (https://host[:port]) browsers sign in from.
	Origins []string `yaml:"origins"`
}

// RetentionConfig says how long evidence is kept.
type RetentionConfig struct {
	EventsDays     int `yaml:"events_days"`
	RecordingsDays int `yaml:"recordings_days"`
}

// AuditSinkConfig configures the SIEM sink.
type AuditSinkConfig struct {
	File       string `yaml:"file"`
	WebhookURL string `yaml:"webhook_url"`
}

// ProxyConfig configures the proxy (HTTPS API and, later, SSH entry point).
type ProxyConfig struct {
	// Listen is the one public address: HTTPS API, SSH jump host and node
	// tunnels, told apart by the first bytes of each connection.
	Listen string `yaml:"listen"`
	// PublicAddr is what users and nodes use to reach the proxy; defaults to
	// Listen.
	PublicAddr string `yaml:"public_addr"`
	// HandshakeTimeout drops connections that do not finish their
	// protocol detection or SSH handshake in time (default 10s).
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxUnauthenticated bounds connections still in their handshake
	// (default 512).
	MaxUnauthenticated int `yaml:"max_unauthenticated"`
	// LockGrace is how long the proxy lets a node end a newly locked
	// session itself (the user then sees the lock's message) before the
	// proxy cuts the connection (default 250ms; negative: at once).
	LockGrace time.Duration `yaml:"lock_grace"`
	// AuthServers are the auth instances (host:port of their auth.listen)
	// a proxy that runs without auth calls, in order of preference; it
	// moves to the next when one cannot be reached.
	AuthServers []string `yaml:"auth_servers"`
	// Token or TokenFile is the proxy join token (warden tokens add --type
	// proxy), needed at the first start only; CAPin is the cluster CA's
	// fingerprint it is checked against.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	CAPin     string `yaml:"ca_pin"`
	// Name names the proxy (default: the host name).
	Name string `yaml:"name"`
	// MetricsAddr is where Prometheus metrics are served (plain HTTP,
	// GET /metrics), apart from the public port: DefaultMetricsAddr when
	// empty, or MetricsOff.
	MetricsAddr string `yaml:"metrics_addr"`
	// PeerListen turns proxy peering on (several proxies on one
	// PostgreSQL database): other proxies connect here, over mutual TLS
	// with certificates from the cluster CA, to reach the nodes whose
	// tunnels end at this proxy. Empty: off.
	PeerListen string `yaml:"peer_listen"`
	// PeerAddr is the address peers dial (default: PeerListen; needed when
	// that is a wildcard address).
	PeerAddr string `yaml:"peer_addr"`
	// WebTerminalResumeGrace is how long a web terminal keeps its SSH
	// session while no page shows it (a network blip), for the page to
	// resume it: web.DefaultResumeGrace (60s) if zero, at most
	// web.MaxResumeGrace (1h).
	WebTerminalResumeGrace time.Duration `yaml:"web_terminal_resume_grace"`
}

// Defaults.
const (
	DefaultProxyListen = "127.0.0.1:3080"
	// DefaultAuthListen is auth's API address when it runs without the
	// proxy.
	DefaultAuthListen = "127.0.0.1:3025"
	// DefaultMetricsAddr is local only: metrics describe the cluster's
	// activity and are not for the public port.
	DefaultMetricsAddr = "127.0.0.1:3081"
	// MetricsOff as the metrics address serves no metrics.
	MetricsOff = "off"
)

// DefaultDataDir is /var/lib/warden for root, else ~/.local/share/warden.
// WARDEN_DATA_DIR overrides both.
func DefaultDataDir() string {
	if d := os.Getenv("WARDEN_DATA_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/warden"
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "warden-data"
	}
	return filepath.Join(home, ".local", "share", "warden")
}

// LoadConfig reads a YAML config file strictly (unknown fields are errors).
// An empty file, or one with only comments, is the default configuration.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// CheckAndSetDefaults validates the configuration and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.ClusterName == "" {
		c.ClusterName = "warden"
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if len(c.Services) == 0 {
		c.Services = []string{Auth, Proxy, Node}
	}
	if err := c.checkStorage(); err != nil {
		return err
	}
	for _, s := range c.Services {
		if s != Auth && s != Proxy && s != Node && s != Kube {
			return fmt.Errorf("unknown service %q (choose from auth, proxy, node, kube)", s)
		}
	}
	if c.Has(Proxy) && !c.Has(Auth) {
		if len(c.Proxy.AuthServers) == 0 {
			return errors.New("a proxy that runs without auth needs the auth servers' addresses (proxy auth_servers, --auth-server host:port)")
		}
		for _, a := range c.Proxy.AuthServers {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("proxy auth_servers %q: %w", a, err)
			}
		}
		if c.Proxy.Token != "" && c.Proxy.TokenFile != "" {
			return errors.New("proxy: give token or token_file, not both")
		}
		if c.Proxy.Name == "" {
			h, err := os.Hostname()
			if err != nil {
				return fmt.Errorf("proxy name: %w", err)
			}
			c.Proxy.Name = h
		}
	}
	if c.Has(Auth) && !c.Has(Proxy) {
		if c.Auth.Listen == "" {
			c.Auth.Listen = DefaultAuthListen
		}
		if _, _, err := net.SplitHostPort(c.Auth.Listen); err != nil {
			return fmt.Errorf("auth listen %q: %w", c.Auth.Listen, err)
		}
	}
	if c.Proxy.Listen == "" {
		c.Proxy.Listen = DefaultProxyListen
	}
	if c.Proxy.PublicAddr == "" && c.Has(Proxy) {
		c.Proxy.PublicAddr = c.Proxy.Listen
	}
	if r := c.Auth.Retention; r.EventsDays > 0 && (r.RecordingsDays == 0 || r.RecordingsDays > r.EventsDays) {
		return fmt.Errorf("auth retention: recordings (recordings_days %d, 0 = forever) must not outlive audit events "+
			"(events_days %d): every read of a recording is checked against its recording.complete audit event", r.RecordingsDays, r.EventsDays)
	}
	if c.Auth.CheckpointInterval < 0 {
		return fmt.Errorf("auth checkpoint_interval must be positive, not %s", c.Auth.CheckpointInterval)
	}
	if c.Auth.AuditSigningKey == "" {
		c.Auth.AuditSigningKey = filepath.Join(c.DataDir, "audit-signing-key.pem")
	}
	if c.Proxy.MetricsAddr == "" {
		c.Proxy.MetricsAddr = DefaultMetricsAddr
	}
	if a := c.Proxy.MetricsAddr; a != MetricsOff {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("proxy metrics_addr %q: %w (or %q)", a, err, MetricsOff)
		}
	}
	if c.Node.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: %w", err)
		}
		c.Node.Name = h
	}
	switch c.Node.SessionCgroups {
	case "", node.CgroupsAuto, node.CgroupsOff:
	default:
		return fmt.Errorf("node session_cgroups must be %q or %q, not %q", node.CgroupsAuto, node.CgroupsOff, c.Node.SessionCgroups)
	}
	if c.Has(Kube) && !c.Has(Auth) && !c.Has(Proxy) && c.Kube.ProxyAddr == "" {
		return errors.New("a kube agent that runs without auth needs --proxy host:port")
	}
	if c.Has(Node) && !c.Has(Proxy) {
		if c.Node.ProxyAddr == "" {
			return errors.New("a node that runs without auth needs --proxy host:port")
		}
	}
	if c.Proxy.PeerListen != "" {
		if c.Proxy.PeerAddr == "" {
			c.Proxy.PeerAddr = c.Proxy.PeerListen
		}
		host, _, err := net.SplitHostPort(c.Proxy.PeerAddr)
		if err != nil {
			return fmt.Errorf("proxy peer_addr %q: %w", c.Proxy.PeerAddr, err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return fmt.Errorf("proxy peer_addr %q: peers need an address to dial (set peer_addr when peer_listen is a wildcard)", c.Proxy.PeerAddr)
		}
	}
	for _, a := range []string{c.Proxy.Listen, c.Node.Listen, c.Proxy.PeerListen} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("listen address %q: %w", a, err)
		}
	}
	return nil
}

// Has reports whether service s is enabled.
func (c *Config) Has(s string) bool { return slices.Contains(c.Services, s) }
