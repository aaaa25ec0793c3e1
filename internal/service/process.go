package service

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auditsink"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/kubeagent"
	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/notify"
	"github.com/warden-sh/warden/internal/proxy"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage"
)

// Process is a running `warden start`.
type Process struct {
	cfg      *Config
	log      *slog.Logger
	backend  storage.Backend
	auth     *auth.Server
	http     *http.Server
	proxyLn  net.Listener
	mux      *proxy.Mux
	proxy    *proxy.Server
	metrics  *prometheus.Registry
	notifier *notify.Notifier
	node     *nodeagent.Agent
	kube     *kubeagent.Agent
	// ready is set once every service started (/readyz).
	ready    atomic.Bool
	wg       sync.WaitGroup
	errc     chan error
	closeOne sync.Once
	// base is the context of every API request; cancelled on Close so that
	// long-lived watch streams end and Shutdown does not wait for them.
	base       context.Context
	cancelBase context.CancelFunc

	// metricsLn and metricsSrv serve /metrics apart from the public port.
	metricsLn  net.Listener
	metricsSrv *http.Server
	// peerLn is the proxy's peer listener (proxy peering; nil when off).
	peerLn net.Listener
}

// Start starts the configured services and returns once they serve.
func Start(ctx context.Context, cfg *Config, log *slog.Logger) (*Process, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if err := privateDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	log.Info("starting", "services", cfg.Services, "data_dir", cfg.DataDir)
	p := &Process{cfg: cfg, log: log, errc: make(chan error, 4)}
	p.base, p.cancelBase = context.WithCancel(context.WithoutCancel(ctx))
	ok := false
	defer func() {
		if !ok {
			p.Close()
		}
	}()
	switch {
	case cfg.Has(Auth):
		if err := p.startAuth(ctx); err != nil {
			return nil, err
		}
	case cfg.Has(Proxy):
		if err := p.startSplitProxy(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.Has(Node) {
		ncfg := cfg.Node
		if cfg.Has(Proxy) && ncfg.ProxyAddr == "" {
			ncfg.ProxyAddr = p.ProxyAddr()
		}
		acfg := nodeagent.Config{
			Settings:  ncfg,
			DataDir:   filepath.Join(cfg.DataDir, "node"),
			Logger:    log.With("service", "node"),
			LocalAuth: p.localJoin,
		}
		if p.auth != nil {
			acfg.LocalServer = localNode(p.auth)
		}
		agent, err := nodeagent.Start(ctx, acfg)
		if err != nil {
			return nil, err
		}
		p.node = agent
	}
	if cfg.Has(Kube) {
		if err := p.startKube(ctx); err != nil {
			return nil, err
		}
	}
	ok = true
	p.ready.Store(true)
	return p, nil
}

// privateDir creates the data directory, or tightens an existing one that
// others may read or enter: it holds the CAs' keys and the admin identity.
func privateDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data directory %s is open to other users (mode %#o) and cannot be made private: %w", dir, perm, err)
		}
		log.Warn("data directory was open to other users: made it private", "path", dir, "mode_was", fmt.Sprintf("%#o", perm), "mode", "0700")
	}
	return nil
}

func (p *Process) startAuth(ctx context.Context) error {
	b, auditLog, err := p.openStorage(ctx)
	if err != nil {
		return err
	}
	p.backend = b
	// The port opens once admin commands work (the admin identity is
	// written), so a script may wait for it. Only a port the system picks
	// (":0", tests) must be opened first, to learn it; nobody can wait for
	// that one before it is printed.
	withProxy := p.cfg.Has(Proxy)
	listenAddr := p.cfg.Proxy.Listen
	public := p.cfg.Proxy.PublicAddr
	if !withProxy {
		// Auth alone serves its API on auth.listen; admin commands on this
		// host call it there.
		listenAddr, public = p.cfg.Auth.Listen, p.cfg.Auth.Listen
	}
	_, listenPort, _ := net.SplitHostPort(listenAddr)
	if _, port, _ := net.SplitHostPort(public); port == "0" || listenPort == "0" {
		if err := p.listenOn(listenAddr); err != nil {
			return err
		}
		if host, port, _ := net.SplitHostPort(public); port == "0" {
			// The host as configured (a name such as localhost stays a
			// name: passkeys need one), the port the system picked.
			lnHost, picked, _ := net.SplitHostPort(p.proxyLn.Addr().String())
			if host == "" {
				host = lnHost
			}
			public = net.JoinHostPort(host, picked)
		}
	}
	// What users are told to reach (invites, passkeys' relying party): the
	// proxy's public address, also when auth runs apart from the proxies
	// and proxy.public_addr names them (or their load balancer).
	usersAddr := public
	if !withProxy && p.cfg.Proxy.PublicAddr != "" {
		usersAddr = p.cfg.Proxy.PublicAddr
	}
	recordings, err := recording.OpenStore(p.cfg.Storage.RecordingsDir)
	if err != nil {
		return fmt.Errorf("recordings: %w", err)
	}
	p.notifier, err = notify.New(notify.Config{Targets: p.cfg.Auth.Notifications, Logger: p.log.With("service", "notify"),
		OnResult: func(t notify.Target, m notify.Message, attempts int, err error) {
			ev := audit.Event{Event: audit.NotificationDelivery, Success: err == nil,
				Fields: map[string]any{"target": t.Redacted(), "notified_event": m.Event, "attempts": attempts}}
			if err != nil {
				ev.Error = err.Error()
			}
			_ = auditLog.Emit(context.Background(), ev)
		}})
	if err != nil {
		return fmt.Errorf("notifications: %w", err)
	}
	auditKey, err := loadOrCreateAuditKey(p.cfg.Auth.AuditSigningKey, p.log)
	if err != nil {
		return err
	}
	a, err := auth.New(ctx, auth.Config{ClusterName: p.cfg.ClusterName, Backend: b, Audit: auditLog,
		AuditKey: auditKey, CheckpointInterval: p.cfg.Auth.CheckpointInterval,
		PublicAddr: usersAddr, Logger: p.log.With("service", "auth"), DefaultTTL: p.cfg.Auth.DefaultTTL, NodeCertTTL: p.cfg.Auth.NodeCertTTL,
		Notifier: p.notifier, RequestPendingTTL: p.cfg.Auth.RequestPendingTTL, Recordings: recordings,
		EventRetention:     time.Duration(p.cfg.Auth.Retention.EventsDays) * 24 * time.Hour,
		RecordingRetention: time.Duration(p.cfg.Auth.Retention.RecordingsDays) * 24 * time.Hour,
		WebAuthn:           auth.WebAuthnConfig{RPID: p.cfg.Auth.WebAuthn.RPID, Origins: p.cfg.Auth.WebAuthn.Origins},
		RequirePasskey:     p.cfg.Auth.RequirePasskey, RequireSessionMFA: p.cfg.Auth.RequireSessionMFA})
	if err != nil {
		return err
	}
	p.auth = a
	if sink := p.cfg.Auth.AuditSink; sink.File != "" || sink.WebhookURL != "" {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			err := auditsink.Run(p.base, auditLog, auditsink.Config{File: sink.File, WebhookURL: sink.WebhookURL,
				CursorPath: filepath.Join(p.cfg.DataDir, "audit-sink.cursor"), Logger: p.log.With("service", "audit-sink")})
			if err != nil && p.base.Err() == nil {
				p.log.Error("audit sink stopped", "err", err)
			}
		}()
	}
	tlsCfg, err := p.serverTLS(public, listenAddr)
	if err != nil {
		return err
	}
	if withProxy {
		if err := p.startProxy(public); err != nil {
			return err
		}
	} else {
		// The nodes are those the proxies running apart publish.
		a.SetInventory(a.StoredInventory())
		a.SetKubeInventory(a.StoredKubeInventory())
		p.metrics = prometheus.NewRegistry()
		p.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if err := p.startMetrics(); err != nil {
		return err
	}
	var handler http.Handler
	if withProxy {
		handler, err = p.httpHandler(a)
	} else {
		handler = p.authHandler(a)
	}
	if err != nil {
		return err
	}
	p.http = &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return p.base },
	}
	if err := p.writeAdminIdentity(public); err != nil {
		return err
	}
	if p.proxyLn == nil {
		if err := p.listenOn(listenAddr); err != nil {
			return err
		}
	}
	if !withProxy {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := p.http.ServeTLS(p.proxyLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.errc <- fmt.Errorf("auth api: %w", err)
			}
		}()
		return nil
	}
	p.mux = proxy.NewMux(p.proxyLn)
	if p.cfg.Proxy.HandshakeTimeout > 0 {
		p.mux.PeekTimeout = p.cfg.Proxy.HandshakeTimeout
	}
	p.wg.Add(4)
	go func() {
		defer p.wg.Done()
		if err := p.proxy.ServeData(p.mux.Data()); err != nil {
			p.errc <- fmt.Errorf("proxy data connections: %w", err)
		}
	}()
	go func() {
		defer p.wg.Done()
		if err := p.http.ServeTLS(p.mux.TLS(), "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.errc <- fmt.Errorf("proxy https: %w", err)
		}
	}()
	go func() {
		defer p.wg.Done()
		if err := p.proxy.Serve(p.mux.SSH()); err != nil {
			p.errc <- fmt.Errorf("proxy ssh: %w", err)
		}
	}()
	go func() {
		defer p.wg.Done()
		if err := p.mux.Serve(); err != nil {
			p.errc <- fmt.Errorf("proxy listener: %w", err)
		}
	}()
	return nil
}

func (p *Process) listenOn(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	p.proxyLn = ln
	return nil
}

// serverTLS issues a fresh server certificate for this process from the
// cluster TLS CA; client certificates are verified when presented.
func (p *Process) serverTLS(public, listen string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	names := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	for _, addr := range []string{public, listen} {
		host, _, _ := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); ip != nil {
			ips = append(ips, ip)
		} else if host != "" {
			names = append(names, host)
		}
	}
	der, err := p.auth.Authority().IssueTLSServer(&key.PublicKey, names, ips, 365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("issue proxy tls certificate: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    p.auth.Authority().CertPool(),
		MinVersion:   tls.VersionTLS12,
		CipherSuites: TLS12CipherSuites,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}

// TLS12CipherSuites are the proxy's TLS 1.2 cipher suites: forward secret
// (ECDHE) and AEAD only; no CBC, no RSA key exchange. (TLS 1.3 suites are
// not configurable in Go, and are all AEAD.)
var TLS12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

func (p *Process) writeAdminIdentity(public string) error {
	keyPEM, priv, err := idfile.NewPrivateKey()
	if err != nil {
		return err
	}
	der, err := p.auth.IssueAdminIdentity(priv.Public(), 365*24*time.Hour)
	if err != nil {
		return err
	}
	f := &idfile.File{Kind: "admin", ProxyAddr: public, Cluster: p.cfg.ClusterName, PrivateKey: keyPEM,
		TLSCert: pemCert(der), TLSCA: string(p.auth.Authority().TLSCAPEM())}
	return f.Write(idfile.AdminPath(p.cfg.DataDir))
}

// localJoin creates a single-use join token for the in-process node.
func (p *Process) localJoin(ctx context.Context) (token, caPin string, err error) {
	if p.auth == nil {
		return "", "", errors.New("no local auth service")
	}
	tok, err := p.auth.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: "node", TTL: 5 * time.Minute})
	if err != nil {
		return "", "", err
	}
	return tok.Token, api.Fingerprint(p.auth.Authority().TLSCACert().Raw), nil
}

// Auth returns the in-process auth server (nil if not running).
func (p *Process) Auth() *auth.Server { return p.auth }

// ProxyAddr returns the proxy's listening address.
func (p *Process) ProxyAddr() string {
	if p.proxyLn == nil {
		return ""
	}
	return p.proxyLn.Addr().String()
}

// Node returns the node agent (nil if not running).
func (p *Process) Node() *nodeagent.Agent { return p.node }

// Proxy returns the proxy server (nil if the proxy does not run).
func (p *Process) Proxy() *proxy.Server { return p.proxy }

// Wait blocks until ctx ends or a service fails.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-p.errc:
		return err
	}
}

// Close stops every service.
func (p *Process) Close() error {
	p.closeOne.Do(func() {
		if p.kube != nil {
			p.kube.Close()
		}
		if p.node != nil {
			p.node.Close()
		}
		p.cancelBase()
		if p.proxy != nil {
			p.proxy.Close()
		}
		if p.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = p.http.Shutdown(ctx)
			cancel()
		}
		if p.metricsSrv != nil {
			_ = p.metricsSrv.Close()
		} else if p.metricsLn != nil {
			p.metricsLn.Close()
		}
		if p.peerLn != nil {
			p.peerLn.Close()
		}
		if p.mux != nil {
			p.mux.Close()
		} else if p.proxyLn != nil {
			p.proxyLn.Close()
		}
		p.wg.Wait()
		if p.auth != nil {
			p.auth.Close()
		}
		if p.notifier != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = p.notifier.Close(ctx)
			cancel()
		}
		if p.backend != nil {
			p.backend.Close()
		}
	})
	return nil
}
