// Package kubeagent is the kube agent (`warden start --services kube`):
// it runs next to one or more Kubernetes clusters, joins with a join token
// of type kube, dials out to the proxy over the same reverse tunnel as a
// node (internal/tunnel), reports its clusters in its heartbeats, and
// serves the Kubernetes API requests the proxy relays on kube-conn
// channels: it removes every Impersonate-* and Authorization header a
// client sent, sets Impersonate-User and Impersonate-Group from the
// proxy's decision, and sends the request to the API server with its own
// credentials (a kubeconfig or the in-cluster service account), which
// need only the right to impersonate (docs/kubernetes.md).
package kubeagent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/agentid"
	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/tunnel"
	"github.com/warden-sh/warden/internal/wire"
)

// Settings are the kube agent's part of the configuration (the kube:
// section of the config file, or flags of warden start).
type Settings struct {
	// Name of the agent (defaults to the host name).
	Name string `yaml:"name"`
	// ProxyAddr is the proxy to join and dial.
	ProxyAddr string `yaml:"proxy"`
	// TokenFile holds the kube join token (first start only); or
	// WARDEN_TOKEN. Token is the same inline (ps shows a command line).
	TokenFile string `yaml:"token_file"`
	Token     string `yaml:"token"`
	// CAPin is the expected "sha256:..." fingerprint of the cluster TLS CA.
	CAPin string `yaml:"ca_pin"`
	// Insecure skips CA pinning on join (tests only).
	Insecure bool `yaml:"insecure"`
	// Clusters the agent serves.
	Clusters []ClusterSettings `yaml:"clusters"`
}

// ClusterSettings is one Kubernetes cluster the agent serves.
type ClusterSettings struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
	// Kubeconfig and Context give the agent's credentials; or InCluster
	// uses the pod's service account.
	Kubeconfig string `yaml:"kubeconfig"`
	Context    string `yaml:"context"`
	InCluster  bool   `yaml:"in_cluster"`
}

// IdentityHeader carries the proxy's decision (proxy.KubeIdentity).
const IdentityHeader = "X-Warden-Kube-Identity"

// identity mirrors proxy.KubeIdentity (the agent does not import proxy).
type identity struct {
	Cluster string   `json:"cluster"`
	User    string   `json:"user"`
	Groups  []string `json:"groups,omitempty"`
}

// Config configures a kube agent.
type Config struct {
	Settings
	DataDir string
	Logger  *slog.Logger
	// HeartbeatInterval defaults to 10s.
	HeartbeatInterval time.Duration
	// RenewCheckInterval defaults to 1m.
	RenewCheckInterval time.Duration
}

// Agent is a running kube agent.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	idPath    string
	mu        sync.Mutex
	id        *idfile.File
	signer    ssh.Signer
	client    *api.Client
	clusters  map[string]*upstream
	srv       *http.Server
	conns     *connListener
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	tunnelUp  chan struct{}
	upOnce    sync.Once
	heartbeat tunnel.Heartbeat
	// identities are the decisions (IdentityHeader) decoded.
	identities identities
}

// Start joins (first start) or loads the agent's identity, loads each
// cluster's credentials and dials the proxy.
func Start(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Clusters) == 0 {
		return nil, errors.New("kube agent: no clusters (give --kube-cluster NAME with --kubeconfig, or a kube.clusters list in the config file)")
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, idPath: filepath.Join(cfg.DataDir, "identity.json"),
		clusters: map[string]*upstream{}, tunnelUp: make(chan struct{})}
	for _, c := range cfg.Clusters {
		if c.Name == "" {
			return nil, errors.New("kube agent: a cluster needs a name")
		}
		if _, dup := a.clusters[c.Name]; dup {
			return nil, fmt.Errorf("kube agent: cluster %q is listed twice", c.Name)
		}
		var up *upstream
		var err error
		switch {
		case c.InCluster:
			up, err = inCluster()
		case c.Kubeconfig != "":
			up, err = loadKubeconfig(c.Kubeconfig, c.Context)
		default:
			err = errors.New("give a kubeconfig or in_cluster: true")
		}
		if err != nil {
			return nil, fmt.Errorf("kube cluster %q: %w", c.Name, err)
		}
		a.clusters[c.Name] = up
		a.heartbeat.Kube = append(a.heartbeat.Kube, tunnel.KubeCluster{Name: c.Name, Labels: maps.Clone(c.Labels)})
	}
	a.heartbeat.Version = api.Version
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	id, _, err := agentid.LoadOrJoin(a.idPath, func() (*idfile.File, error) { return a.join(ctx) })
	if err != nil {
		return nil, err
	}
	if err := a.setIdentity(id); err != nil {
		return nil, err
	}
	pool, err := id.RootCAs()
	if err != nil {
		return nil, err
	}
	a.client, err = api.NewClient(api.ClientConfig{Addr: a.proxyAddr(), RootCAs: pool,
		GetCertificate: func() (*tls.Certificate, error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.id.TLSCertificate()
		}})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	a.conns = newConnListener()
	a.srv = &http.Server{Handler: http.HandlerFunc(a.serve), ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	a.wg.Add(3)
	go func() { defer a.wg.Done(); _ = a.srv.Serve(a.conns) }()
	go func() { defer a.wg.Done(); a.maintain(runCtx) }()
	go func() {
		defer a.wg.Done()
		tunnel.DialAndServe(runCtx, tunnel.Config{
			Addr: a.proxyAddr(),
			Signer: signerFunc(func() ssh.Signer {
				a.mu.Lock()
				defer a.mu.Unlock()
				return a.signer
			}),
			HostCAs: func() []ssh.PublicKey {
				cas, _ := idfile.ParseAuthorizedKeys(a.current().HostCAs)
				return cas
			},
			Heartbeat:         func() tunnel.Heartbeat { return a.heartbeat },
			HeartbeatInterval: cfg.HeartbeatInterval,
			ChannelType:       tunnel.ChannelKubeConn,
			NoDialBack:        true,
			Handle:            func(_ context.Context, c net.Conn) { a.conns.push(withDeadlines(c)) },
			OnState: func(up bool) {
				if up {
					a.upOnce.Do(func() { close(a.tunnelUp) })
				}
			},
			Logger: a.log,
		})
	}()
	a.log.Info("kube agent started", "agent", cfg.Name, "agent_id", id.NodeID, "clusters", len(a.clusters))
	return a, nil
}

// TunnelUp is closed once the tunnel to the proxy first came up.
func (a *Agent) TunnelUp() <-chan struct{} { return a.tunnelUp }

// Close stops the agent.
func (a *Agent) Close() error {
	if a.cancel != nil {
		a.cancel()
	}
	if a.srv != nil {
		_ = a.srv.Close()
	}
	a.wg.Wait()
	if a.client != nil {
		a.client.Close()
	}
	return nil
}

func (a *Agent) proxyAddr() string {
	if a.cfg.ProxyAddr != "" {
		return a.cfg.ProxyAddr
	}
	return a.id.ProxyAddr
}

// serve relays one request the proxy decided to the cluster's API server.
func (a *Agent) serve(w http.ResponseWriter, r *http.Request) {
	id, ok := a.identities.parse(r.Header.Get(IdentityHeader))
	if !ok {
		// Only the proxy writes this header; without it nothing passes.
		http.Error(w, "warden kube agent: request without a decision", http.StatusForbidden)
		return
	}
	up := a.clusters[id.Cluster]
	if up == nil {
		kubeError(w, http.StatusNotFound, fmt.Sprintf("warden: this agent does not serve kubernetes cluster %q", id.Cluster))
		return
	}
	token, err := up.token()
	if err != nil {
		kubeError(w, http.StatusServiceUnavailable, fmt.Sprintf("warden: kube agent credentials for cluster %q: %v", id.Cluster, err))
		return
	}
	rp := &httputil.ReverseProxy{
		Transport: up.transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up.server)
			out := pr.Out
			out.Header.Del(IdentityHeader)
			for k := range out.Header {
				ck := http.CanonicalHeaderKey(k)
				if strings.HasPrefix(ck, "Impersonate-") || ck == "Authorization" || ck == "Proxy-Authorization" {
					delete(out.Header, k)
				}
			}
			out.Header.Set("Impersonate-User", id.User)
			for _, g := range id.Groups {
				out.Header.Add("Impersonate-Group", g)
			}
			if token != "" {
				out.Header.Set("Authorization", "Bearer "+token)
			}
		},
		// Streaming responses (watch, logs -f: no Content-Length) are
		// flushed at every write anyway; one of known length goes out
		// whole, in one write (one tunnel packet) rather than one per copy.
		FlushInterval: 0,
		BufferPool:    copyBuffers,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			// Say why, without the agent's credentials or addresses
			// beyond the server the admin configured.
			kubeError(w, http.StatusServiceUnavailable, fmt.Sprintf("warden: kubernetes cluster %q is unreachable from its agent: %v", id.Cluster, err))
		},
	}
	rp.ServeHTTP(w, r)
}

func kubeError(w http.ResponseWriter, code int, msg string) {
	// kubectl shows a discovery request's error only as a warning.
	w.Header().Set("Warning", `299 - "`+strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", " ", "\r", " ").Replace(msg)+`"`)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": http.StatusText(code), "code": code})
}

func (a *Agent) join(ctx context.Context) (*idfile.File, error) {
	token, pin := a.cfg.Token, a.cfg.CAPin
	if token == "" && a.cfg.TokenFile != "" {
		b, err := os.ReadFile(a.cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("join token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		token = os.Getenv("WARDEN_TOKEN")
	}
	if token == "" {
		return nil, errors.New("this kube agent has not joined a cluster yet: give a join token with --token-file or WARDEN_TOKEN (an admin creates one with: warden tokens add --type kube)")
	}
	if pin == "" && !a.cfg.Insecure {
		return nil, errors.New("joining needs --ca-pin sha256:... (printed by warden tokens add) so the agent knows it talks to the right cluster")
	}
	if a.cfg.ProxyAddr == "" {
		return nil, errors.New("joining needs --proxy host:port")
	}
	id, err := agentid.Join(ctx, agentid.JoinRequest{ProxyAddr: a.cfg.ProxyAddr, Token: token, CAPin: pin, Name: a.cfg.Name, Kind: wire.TokenTypeKube,
		Insecure: a.cfg.Insecure, Agent: "kube agent", Path: a.idPath})
	if err != nil {
		return nil, err
	}
	a.log.Info("joined cluster", "cluster", id.Cluster, "agent_id", id.NodeID)
	return id, nil
}

func (a *Agent) setIdentity(id *idfile.File) error {
	signer, _, err := id.CertSigner()
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.id, a.signer = id, signer
	return nil
}

// maintain renews the agent's certificates in the last third of their
// life, as a node does.
func (a *Agent) maintain(ctx context.Context) {
	agentid.Renewal{Every: a.cfg.RenewCheckInterval, Client: a.client, Path: a.idPath, Current: a.current,
		Set: a.setIdentity, Log: a.log, What: "kube agent"}.Run(ctx)
}

func (a *Agent) current() *idfile.File {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

// signerFunc is an ssh.Signer that asks for the current one each time
// (renewal swaps it).
type signerFunc func() ssh.Signer

func (f signerFunc) PublicKey() ssh.PublicKey { return f().PublicKey() }
func (f signerFunc) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	return f().Sign(r, data)
}

// connListener is a net.Listener of the connections the proxy opens on
// the tunnel (kube-conn channels), for the agent's HTTP server.
type connListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return kubeAddr{} }

type kubeAddr struct{}

func (kubeAddr) Network() string { return "tunnel" }
func (kubeAddr) String() string  { return "kube-conn" }

// identities decodes the proxy's decisions, remembering the last ones by
// their exact text: one user's requests carry the same decision, and at a
// thousand requests a second the JSON decode is worth saving.
type identities struct {
	mu sync.Mutex
	m  map[string]identity
}

// identitiesMax bounds the remembered decisions.
const identitiesMax = 1024

func (c *identities) parse(raw string) (identity, bool) {
	if raw == "" || len(raw) > 16<<10 {
		return identity{}, false
	}
	c.mu.Lock()
	id, ok := c.m[raw]
	c.mu.Unlock()
	if ok {
		// Callers may append to Groups.
		id.Groups = slices.Clone(id.Groups)
		return id, true
	}
	if json.Unmarshal([]byte(raw), &id) != nil || id.User == "" {
		return identity{}, false
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= identitiesMax {
		c.m = make(map[string]identity)
	}
	c.m[raw] = identity{Cluster: id.Cluster, User: id.User, Groups: slices.Clone(id.Groups)}
	c.mu.Unlock()
	return id, true
}
