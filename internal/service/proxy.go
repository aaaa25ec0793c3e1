package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/proxy"
	"github.com/warden-sh/warden/internal/web"
)

// proxyCertTTL is the validity of the proxy's own host certificate, issued
// afresh at each start.
const proxyCertTTL = 30 * 24 * time.Hour

// startProxy creates the proxy's SSH side on the shared listener: a host
// certificate for the names clients use, the tunnel registry that becomes
// the cluster's node inventory, and the protocol multiplexer.
func (p *Process) startProxy(public string) error {
	_, priv, err := idfile.NewPrivateKey()
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	principals := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		principals = append(principals, h)
	}
	for _, addr := range []string{public, p.cfg.Proxy.Listen} {
		if host, _, err := net.SplitHostPort(addr); err == nil && host != "" && !strings.ContainsAny(host, " ") {
			principals = append(principals, host)
		}
	}
	cert, err := p.auth.IssueProxyHostCert(signer.PublicKey(), principals, proxyCertTTL)
	if err != nil {
		return err
	}
	certSigner, err := ssh.NewCertSigner(cert, signer)
	if err != nil {
		return err
	}
	a := p.auth.Authority()
	peering, err := p.peering()
	if err != nil {
		return err
	}
	p.metrics = prometheus.NewRegistry()
	p.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := proxy.New(proxy.Config{
		HostSigner: certSigner,
		UserCAs:    func() []ssh.PublicKey { return []ssh.PublicKey{a.UserCAPublicKey()} },
		HostCAs:    func() []ssh.PublicKey { return []ssh.PublicKey{a.HostCAPublicKey()} },
		Directory:  p.auth,
		Audit:      p.auth.Emitter(auth.ProxyCaller()),
		Metrics:    proxy.NewMetrics(p.metrics),
		Logger:     p.log.With("service", "proxy"),

		HandshakeTimeout:   p.cfg.Proxy.HandshakeTimeout,
		MaxUnauthenticated: p.cfg.Proxy.MaxUnauthenticated,
		LockGrace:          p.cfg.Proxy.LockGrace,
		Peering:            peering,
	})
	if err != nil {
		return err
	}
	p.proxy = srv
	// Live connections a new lock matches end at the proxy too.
	p.auth.OnLocksChanged(srv.ReverifyLocks)
	// A role edit that no longer allows a live agentless session ends it
	// (agent nodes decide their own sessions again).
	p.auth.OnRolesChanged(srv.RedecideAgentless)
	// With peering, the inventory also holds the nodes behind live peers.
	p.auth.SetInventory(srv.Inventory())
	if p.peerLn != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := srv.ServePeers(p.peerLn); err != nil {
				p.errc <- fmt.Errorf("proxy peer listener: %w", err)
			}
		}()
	}
	// Kubernetes clusters of the kube agents; live kube requests end on a lock.
	p.auth.SetKubeInventory(srv.KubeInventory())
	p.auth.OnLocksChanged(srv.ReverifyKube)
	return nil
}

// httpHandler serves the API, the web UI and the health endpoints on the
// public port, every response with the security headers (the web UI sets a
// CSP of its own). Metrics are served apart (metricsHandler).
func (p *Process) httpHandler(a *auth.Server) (http.Handler, error) {
	mux := http.NewServeMux()
	mux.Handle("/v1/", api.NewHandler(a, p.log.With("service", "api")))
	ui, err := web.New(web.Config{Auth: a, ProxyAddr: p.ProxyAddr, Logger: p.log.With("service", "web"), Version: api.Version,
		ResumeGrace: p.cfg.Proxy.WebTerminalResumeGrace,
		DialProxy: func(_ context.Context, clientAddr string, data bool) (net.Conn, error) {
			return p.proxy.DialLocal(clientAddr, data)
		},
		RedeemData: p.proxy.RedeemLocal,
		JoinKube: func(ctx context.Context, c auth.Caller, remoteAddr, id, mode string) (web.KubeParticipant, error) {
			kp, err := p.proxy.JoinKube(ctx, c, remoteAddr, id, mode)
			if err != nil {
				return nil, err
			}
			return kp, nil
		}})
	if err != nil {
		return nil, err
	}
	mux.Handle(web.Prefix, ui)
	mux.Handle(proxy.KubePrefix, p.proxy.KubeHandler())
	mux.Handle(proxy.KubeSessionsPrefix, p.proxy.KubeSessionsHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if p.base.Err() != nil {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		if !p.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return api.SecurityHeaders(mux), nil
}

// metricsHandler serves GET /metrics for the metrics listener.
func (p *Process) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics, promhttp.HandlerOpts{}))
	return mux
}

// startMetrics serves metrics on their own listener (proxy.metrics_addr),
// unless they are off.
func (p *Process) startMetrics() error {
	addr := p.cfg.Proxy.MetricsAddr
	if addr == MetricsOff {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener (proxy metrics_addr, --metrics-addr; %q turns it off): %w", MetricsOff, err)
	}
	p.metricsLn = ln
	p.metricsSrv = &http.Server{
		Handler:           p.metricsHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.errc <- fmt.Errorf("metrics: %w", err)
		}
	}()
	return nil
}

// MetricsAddr is the metrics listener's address ("" when off).
func (p *Process) MetricsAddr() string {
	if p.metricsLn == nil {
		return ""
	}
	return p.metricsLn.Addr().String()
}

// authHandler serves the API and the health endpoints of auth running
// without the proxy (its clients: proxies, the nodes' and users' calls
// they forward, admin commands on the host).
func (p *Process) authHandler(a *auth.Server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/", api.NewHandler(a, p.log.With("service", "api")))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if p.base.Err() != nil {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		if !p.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return api.SecurityHeaders(mux)
}
