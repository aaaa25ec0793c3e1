// Package nodeagent is everything a node runs around its SSH server
// (internal/node): join and identity, certificate renewal, the reverse
// tunnel to the proxy (via tunnel), labels, the watch of roles and locks that
// feeds the node's access decision (node.Access), continuous verification of
// live sessions, the audit event journal and forwarding, and the recording
// spool's upload.
package nodeagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/agentid"
	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/node"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/tunnel"
)

// Settings are the node agent's part of the configuration (the node:
// section of the config file).
type Settings struct {
	// Listen, if set, also serves SSH directly on this address (direct
	// mode). By default a node opens no port: it is reached only through
	// its reverse tunnel to the proxy.
	Listen string `yaml:"listen"`
	// Name defaults to the host name.
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
	// Commands are dynamic labels.
	Commands []LabelCommand `yaml:"commands"`
	// ProxyAddr is the proxy to join and report to (not needed when the
	// node runs with auth and proxy in one process).
	ProxyAddr string `yaml:"proxy"`
	// Token is the join token (first start only). A command line shows it
	// to everyone on the machine (ps): prefer TokenFile, or WARDEN_TOKEN.
	Token string `yaml:"token"`
	// TokenFile holds the join token (read at the first start only; it may
	// be deleted once the node has joined).
	TokenFile string `yaml:"token_file"`
	// CAPin is the expected "sha256:..." fingerprint of the cluster TLS CA.
	CAPin string `yaml:"ca_pin"`
	// Insecure skips CA pinning on join (tests only).
	Insecure bool `yaml:"insecure"`
	// TunnelOnly carries every session inside the reverse tunnel instead of
	// a separate data connection per session that the node dials out to
	// the proxy. Slower (session bytes are encrypted twice); for networks
	// that allow the node only one connection to the proxy.
	TunnelOnly bool `yaml:"tunnel_only"`
	// SessionCgroups is "auto" (the default: each session's processes in a
	// cgroup of their own where the node can create one, so that revoking
	// access kills every process the session started) or "off".
	SessionCgroups string `yaml:"session_cgroups"`
}

// Config configures a node agent.
type Config struct {
	Settings
	// DataDir holds the node identity.
	DataDir string
	Logger  *slog.Logger
	// LocalAuth, when set, provides a join token and CA pin from an
	// in-process auth service (all-in-one mode).
	LocalAuth func(ctx context.Context) (token, caPin string, err error)
	// LocalServer, when set, is auth in this process, as the node nodeID:
	// recordings and audit events go to it directly instead of over the
	// API. (service wires it; nodeagent does not import auth.)
	LocalServer func(nodeID string) LocalServer
	// HeartbeatInterval defaults to 10s.
	HeartbeatInterval time.Duration
	// RenewCheckInterval is how often the node checks whether its
	// certificates are due for renewal (default 1m).
	RenewCheckInterval time.Duration
	// LockStaleness bounds how long a node in lock_mode strict trusts its
	// last view of the locks (default node.DefaultLockStaleness).
	LockStaleness time.Duration
}

// LocalServer is auth in the node's own process (all-in-one), acting for
// the node: the recording spool uploads to it and audit events go to it as
// they would over the API, with the same checks.
type LocalServer interface {
	recording.Uploader
	EmitEvents(ctx context.Context, evs []audit.Event) error
}

// Agent is a joined node: its SSH server plus the loops that keep it in
// touch with auth (heartbeats, role watch, certificate renewal, audit).
type Agent struct {
	cfg     Config
	log     *slog.Logger
	idPath  string
	mu      sync.Mutex
	id      *idfile.File
	tlsCert atomic.Pointer[tls.Certificate]
	userCAs atomic.Pointer[[]ssh.PublicKey]
	host    *swapSigner
	client  *api.Client
	roles   *roleWatcher
	events  *eventForwarder
	srv     *node.Server
	ln      net.Listener
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	dyn     *dynamicLabels
	spool   *recording.Spool
	access  *node.Access
	// ready is set once the SSH server exists (watch callbacks use it).
	ready atomic.Bool
	// tunnelUp is true while the reverse tunnel to the proxy is connected.
	tunnelUp atomic.Bool
}

// Start joins (first start) or loads the node identity and serves SSH.
func Start(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, idPath: filepath.Join(cfg.DataDir, "identity.json"), dyn: newDynamicLabels(cfg.Labels)}
	id, loaded, err := agentid.LoadOrJoin(a.idPath, func() (*idfile.File, error) { return a.join(ctx) })
	if err != nil {
		return nil, err
	}
	if loaded {
		a.log.Info("loaded node identity", "node_id", id.NodeID)
	}
	if err := a.setIdentity(id); err != nil {
		return nil, err
	}
	pool, err := id.RootCAs()
	if err != nil {
		return nil, err
	}
	a.client, err = api.NewClient(api.ClientConfig{Addr: a.proxyAddr(), RootCAs: pool,
		GetCertificate: func() (*tls.Certificate, error) { return a.tlsCert.Load(), nil }})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	a.access = node.NewAccess(node.AccessConfig{NodeName: id.Node(), NodeID: id.NodeID, Labels: a.labels,
		MaxStale: cfg.LockStaleness, FeedInterval: api.WatchKeepalive})
	a.roles = newRoleWatcher(a.client, a.log, a.access)
	a.roles.onChange = func(string) { a.reverify() }
	var sink eventSink = a.client
	var uploader recording.Uploader = apiUploader{a.client}
	if cfg.LocalServer != nil {
		local := cfg.LocalServer(id.NodeID)
		sink, uploader = local, local
	}
	if a.events, err = newEventForwarder(sink, a.log, filepath.Join(cfg.DataDir, "events.journal")); err != nil {
		a.Close()
		return nil, err
	}
	_ = a.events.Emit(ctx, audit.Event{Event: audit.NodeStart, Success: true, Fields: map[string]any{"version": api.Version}})
	for _, lc := range cfg.Commands {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.dyn.run(runCtx, lc, func(err error) { a.log.Warn("dynamic label", "err", err) })
		}()
	}
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.roles.run(runCtx) }()
	go func() { defer a.wg.Done(); a.events.run(runCtx) }()
	// Give the role watch a moment so the first connections are not refused
	// for want of role definitions.
	a.roles.waitSynced(ctx, 10*time.Second)
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.maintain(runCtx) }()
	go func() { defer a.wg.Done(); a.watchStaleness(runCtx) }()

	a.spool, err = recording.OpenSpool(ctx, recording.SpoolConfig{Dir: filepath.Join(cfg.DataDir, "spool"),
		Uploader: startGatedUploader{Uploader: uploader, events: a.events}, Logger: a.log.With("component", "recording")})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("recording spool: %w", err)
	}
	a.srv, err = node.New(node.Config{
		Recorder:    spoolRecorder{spool: a.spool, events: a.events},
		HostSigners: []ssh.Signer{a.host},
		UserCAs:     func() []ssh.PublicKey { return *a.userCAs.Load() },
		Authorizer:  a.access,
		JoinPolicy:  a.access.CanJoin,
		Audit:       a.events,
		NodeName:    id.Node(),
		NodeID:      id.NodeID,
		Logger:      a.log,

		SessionCgroups: cfg.SessionCgroups,
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.ready.Store(true)
	// Direct mode is optional: by default the node opens no port and is
	// reachable only through its tunnel to the proxy.
	if cfg.Listen != "" {
		a.ln, err = net.Listen("tcp", cfg.Listen)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("node listen: %w", err)
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.srv.Serve(a.ln); err != nil {
				a.log.Error("node ssh server stopped", "err", err)
			}
		}()
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		tunnel.DialAndServe(runCtx, tunnel.Config{
			Addr:   a.proxyAddr(),
			Signer: a.host,
			HostCAs: func() []ssh.PublicKey {
				cas, _ := idfile.ParseAuthorizedKeys(a.current().HostCAs)
				return cas
			},
			Heartbeat:         func() tunnel.Heartbeat { return tunnel.Heartbeat{Labels: a.labels(), Version: api.Version} },
			HeartbeatInterval: cfg.HeartbeatInterval,
			Handle:            a.srv.HandleConn,
			NoDialBack:        cfg.TunnelOnly,
			OnState:           a.tunnelUp.Store,
			Logger:            a.log,
		})
	}()
	a.log.Info("node started", "name", id.Node(), "node_id", id.NodeID, "direct_addr", a.Addr())
	return a, nil
}

func (a *Agent) proxyAddr() string {
	if a.cfg.ProxyAddr != "" {
		return a.cfg.ProxyAddr
	}
	return a.id.ProxyAddr
}

func (a *Agent) join(ctx context.Context) (*idfile.File, error) {
	token, pin := a.cfg.Token, a.cfg.CAPin
	if token == "" && a.cfg.TokenFile != "" {
		b, err := os.ReadFile(a.cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("join token: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("join token file %s is empty", a.cfg.TokenFile)
		}
	}
	if token == "" && a.cfg.LocalAuth != nil {
		var err error
		if token, pin, err = a.cfg.LocalAuth(ctx); err != nil {
			return nil, fmt.Errorf("local join: %w", err)
		}
	}
	if token == "" {
		return nil, errors.New("this node has not joined a cluster yet: give a join token with --token-file or WARDEN_TOKEN (an admin creates one with: warden tokens add --type node)")
	}
	id, err := agentid.Join(ctx, agentid.JoinRequest{ProxyAddr: a.cfg.ProxyAddr, Token: token, CAPin: pin, Name: a.cfg.Name,
		Insecure: a.cfg.Insecure, Agent: "node", Path: a.idPath})
	if err != nil {
		return nil, err
	}
	a.log.Info("joined cluster", "cluster", id.Cluster, "node_id", id.NodeID)
	return id, nil
}

func (a *Agent) setIdentity(id *idfile.File) error {
	signer, _, err := id.CertSigner()
	if err != nil {
		return err
	}
	tc, err := id.TLSCertificate()
	if err != nil {
		return err
	}
	cas, err := idfile.ParseAuthorizedKeys(id.UserCAs)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.host == nil {
		if a.host, err = newSwapSigner(signer); err != nil {
			return err
		}
	} else if err := a.host.set(signer); err != nil {
		return err
	}
	a.id = id
	a.tlsCert.Store(tc)
	a.userCAs.Store(&cas)
	return nil
}

func (a *Agent) labels() map[string]string { return a.dyn.get() }

// maintain renews certificates before they expire.
func (a *Agent) maintain(ctx context.Context) {
	agentid.Renewal{Every: a.cfg.RenewCheckInterval, Client: a.client, Path: a.idPath, Current: a.current,
		Set: a.setIdentity, Log: a.log, What: "node"}.Run(ctx)
}

func (a *Agent) current() *idfile.File {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

// Addr returns the node's SSH address.
func (a *Agent) Addr() string {
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// TunnelUp reports whether the reverse tunnel is connected.
func (a *Agent) TunnelUp() bool { return a.tunnelUp.Load() }

// ID returns the node id.
func (a *Agent) ID() string { return a.id.NodeID }

// Close stops the node.
func (a *Agent) Close() error {
	if a.srv != nil {
		a.srv.Close()
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	if a.spool != nil {
		a.spool.Close()
	}
	if a.events != nil {
		a.events.flush(context.Background())
		defer a.events.close()
	}
	if a.client != nil {
		a.client.Close()
	}
	return nil
}
