package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/agentid"
	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/proxy"
	"github.com/warden-sh/warden/internal/wire"
)

// A proxy that runs without auth (`warden start --services proxy`,
// docs/postgres.md "Split deployments"): it joins once with a proxy join
// token (the cluster CA checked against its pin), keeps its identity in
// DATA/proxy-identity.json and renews it; it calls auth over mutual TLS
// for every decision that needs the current state (the user behind a
// certificate, node registrations, per-session certificate uses), follows
// the roles and locks over auth's watch stream (locks end live
// connections at once), sends its audit events to auth, publishes the
// nodes whose tunnels end at it, and forwards every HTTPS request to auth
// with the client certificate it verified (api/forward.go).

const (
	// inventoryEvery is how often the proxy checks its tunnels for a
	// change to publish; it publishes unchanged ones every third of
	// auth.ProxyInventoryTTL.
	inventoryEvery = 200 * time.Millisecond
)

// identityCheckEvery is how often the identity is checked for renewal (a
// variable for tests).
var identityCheckEvery = time.Minute

// proxyIdentityPath is where a proxy running apart keeps its identity.
func proxyIdentityPath(dataDir string) string { return filepath.Join(dataDir, "proxy-identity.json") }

// splitProxy is the state of a proxy running without auth.
type splitProxy struct {
	p   *Process
	log *slog.Logger
	// clients call each auth server, in order of preference; cur is the
	// one in use.
	clients []*api.Client
	cur     atomic.Int32
	id      atomic.Pointer[idfile.File]
	tlsCert atomic.Pointer[tls.Certificate]
	srvCert atomic.Pointer[tls.Certificate]
	// webCert is the HTTPS certificate for browsers (splitweb.go).
	webCert atomic.Pointer[tls.Certificate]

	// The view of roles and locks from auth's watch stream.
	mu         sync.RWMutex
	roles      map[string]*policy.Role
	requireMFA bool
	synced     atomic.Bool
	locks      *lock.Set
	regs       sync.Map // node id -> auth.NodeRegistration
	srv        *proxy.Server
	// host is the proxy's SSH host certificate signer, swapped on renewal.
	host rotatingSigner
	// agentless is auth's list of agentless servers (splitagentless.go).
	agentless agentlessList
}

// rotatingSigner is an SSH signer whose certificate can be replaced
// while the server runs (the key stays the same: renewals are for it).
type rotatingSigner struct{ cur atomic.Pointer[ssh.Signer] }

func (r *rotatingSigner) set(s ssh.Signer) { r.cur.Store(&s) }

func (r *rotatingSigner) PublicKey() ssh.PublicKey { return (*r.cur.Load()).PublicKey() }

func (r *rotatingSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	return (*r.cur.Load()).Sign(rand, data)
}

func (r *rotatingSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s := *r.cur.Load()
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(rand, data, algorithm)
	}
	return s.Sign(rand, data)
}

func (p *Process) startSplitProxy(ctx context.Context) error {
	s := &splitProxy{p: p, log: p.log.With("service", "proxy"), locks: lock.NewSet()}
	id, err := s.loadOrJoin(ctx)
	if err != nil {
		return err
	}
	if err := s.setIdentity(id); err != nil {
		return err
	}
	pool, err := id.RootCAs()
	if err != nil {
		return err
	}
	for _, addr := range p.cfg.Proxy.AuthServers {
		c, err := api.NewClient(api.ClientConfig{Addr: addr, RootCAs: pool,
			GetCertificate: func() (*tls.Certificate, error) { return s.tlsCert.Load(), nil }})
		if err != nil {
			return err
		}
		s.clients = append(s.clients, c)
	}
	sshSigner, _, err := id.CertSigner()
	if err != nil {
		return err
	}
	s.host.set(sshSigner)
	userCAs, err := idfile.ParseAuthorizedKeys(id.UserCAs)
	if err != nil {
		return err
	}
	hostCAs, err := idfile.ParseAuthorizedKeys(id.HostCAs)
	if err != nil {
		return err
	}
	peering, err := s.peering(ctx)
	if err != nil {
		return err
	}
	p.metrics = prometheus.NewRegistry()
	p.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := proxy.New(proxy.Config{
		HostSigner: &s.host,
		UserCAs:    func() []ssh.PublicKey { return userCAs },
		HostCAs:    func() []ssh.PublicKey { return hostCAs },
		Directory:  s,
		Audit:      s,
		Metrics:    proxy.NewMetrics(p.metrics),
		Logger:     s.log,

		HandshakeTimeout:   p.cfg.Proxy.HandshakeTimeout,
		MaxUnauthenticated: p.cfg.Proxy.MaxUnauthenticated,
		LockGrace:          p.cfg.Proxy.LockGrace,
		Peering:            peering,
	})
	if err != nil {
		return err
	}
	s.srv, p.proxy = srv, srv
	if p.peerLn != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := srv.ServePeers(p.peerLn); err != nil {
				p.errc <- fmt.Errorf("proxy peer listener: %w", err)
			}
		}()
	}
	if err := p.listenOn(p.cfg.Proxy.Listen); err != nil {
		return err
	}
	if err := p.startMetrics(); err != nil {
		return err
	}
	p.http = &http.Server{
		Handler: api.SecurityHeaders(s.httpHandler()),
		TLSConfig: &tls.Config{
			GetCertificate: s.serverCert,
			ClientAuth:     tls.VerifyClientCertIfGiven,
			ClientCAs:      pool,
			MinVersion:     tls.VersionTLS12,
			CipherSuites:   TLS12CipherSuites,
			NextProtos:     []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return p.base },
	}
	// The roles and locks first: until auth's view arrives every user is
	// refused (CheckLock fails closed).
	p.wg.Add(3)
	go func() { defer p.wg.Done(); s.watch(p.base) }()
	go func() { defer p.wg.Done(); s.publishInventory(p.base) }()
	go func() { defer p.wg.Done(); s.renew(p.base) }()
	p.mux = proxy.NewMux(p.proxyLn)
	if p.cfg.Proxy.HandshakeTimeout > 0 {
		p.mux.PeekTimeout = p.cfg.Proxy.HandshakeTimeout
	}
	p.wg.Add(4)
	go func() {
		defer p.wg.Done()
		if err := srv.ServeData(p.mux.Data()); err != nil {
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
		if err := srv.Serve(p.mux.SSH()); err != nil {
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

// principals are the names and addresses the proxy's certificates are
// issued for: its public and listen addresses' hosts, its host name, and
// the loopback names.
func (s *splitProxy) principals() []string {
	out := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		out = append(out, h)
	}
	for _, addr := range []string{s.p.cfg.Proxy.PublicAddr, s.p.cfg.Proxy.Listen} {
		if host, _, err := net.SplitHostPort(addr); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
			out = append(out, host)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// loadOrJoin loads the saved identity, or joins with the token.
func (s *splitProxy) loadOrJoin(ctx context.Context) (*idfile.File, error) {
	path := proxyIdentityPath(s.p.cfg.DataDir)
	if id, err := idfile.Read(path); err == nil {
		return id, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("proxy identity %s: %w", path, err)
	}
	cfg := s.p.cfg.Proxy
	token := cfg.Token
	if token == "" && cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("proxy token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		token = os.Getenv("WARDEN_TOKEN")
	}
	if token == "" {
		return nil, errors.New("the proxy has not joined yet: give a proxy join token (proxy token_file, --token-file; warden tokens add --type proxy)")
	}
	if cfg.CAPin == "" {
		return nil, errors.New("joining needs the cluster CA pin (proxy ca_pin, --ca-pin sha256:...) so the proxy knows it talks to the right cluster")
	}
	var lastErr error
	for _, addr := range cfg.AuthServers {
		id, err := s.join(ctx, addr, token, cfg.CAPin)
		if err == nil {
			if err := id.Write(path); err != nil {
				return nil, fmt.Errorf("save the proxy identity: %w", err)
			}
			s.log.Info("joined the cluster", "proxy_id", id.NodeID, "auth", addr)
			return id, nil
		}
		var ae *api.Error
		if errors.As(err, &ae) {
			return nil, fmt.Errorf("join through %s: %w", addr, err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("no auth server reachable to join: %w", lastErr)
}

func (s *splitProxy) join(ctx context.Context, addr, token, pin string) (*idfile.File, error) {
	if pin == "" {
		// PinnedClient would not check an empty pin: a proxy always joins pinned.
		return nil, errors.New("joining needs the cluster CA pin (--ca-pin)")
	}
	c, err := agentid.PinnedClient(ctx, addr, pin, "auth", "the pin")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	keyPEM, pub, err := agentid.NewKey()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = s.p.cfg.Proxy.Name
	}
	resp, err := c.JoinProxy(ctx, wire.JoinRequest{Token: token, Kind: wire.TokenTypeProxy, Name: s.p.cfg.Proxy.Name, Hostname: host,
		PublicKey: pub, Principals: s.principals()})
	if err != nil {
		return nil, err
	}
	return &idfile.File{Kind: wire.TokenTypeProxy, ProxyAddr: addr, Cluster: resp.Cluster, NodeID: resp.ProxyID,
		NodeName: s.p.cfg.Proxy.Name, PrivateKey: keyPEM, SSHCert: resp.SSHCert, TLSCert: resp.TLSCert, TLSCA: resp.TLSCA,
		HostCAs: resp.HostCAs, UserCAs: resp.UserCAs, TLSServerCert: resp.TLSServerCert}, nil
}

func (s *splitProxy) setIdentity(id *idfile.File) error {
	c, err := id.TLSCertificate()
	if err != nil {
		return err
	}
	sc, err := id.TLSServerCertificate()
	if err != nil {
		return err
	}
	s.id.Store(id)
	s.tlsCert.Store(c)
	s.srvCert.Store(sc)
	return nil
}

// renew renews the identity in the last third of its life; the new
// certificates (TLS client and server, SSH host) are used at once.
func (s *splitProxy) renew(ctx context.Context) {
	t := time.NewTicker(identityCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		leaf := s.tlsCert.Load().Leaf
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		if time.Until(leaf.NotAfter) > life/3 {
			continue
		}
		id := *s.id.Load()
		signer, _, err := id.Signer()
		if err != nil {
			s.log.Error("proxy identity key", "err", err)
			continue
		}
		var certs *wire.ProxyCerts
		err = s.call(ctx, func(c *api.Client) error {
			var err error
			certs, err = c.RenewProxyCerts(ctx, string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
			return err
		})
		if err != nil {
			s.log.Warn("renew the proxy identity", "err", err)
			continue
		}
		id.SSHCert, id.TLSCert, id.TLSServerCert = certs.SSHCert, certs.TLSCert, certs.TLSServerCert
		id.HostCAs, id.UserCAs = certs.HostCAs, certs.UserCAs
		hostSigner, _, err := id.CertSigner()
		if err == nil {
			err = s.setIdentity(&id)
		}
		if err != nil {
			s.log.Error("renewed proxy identity", "err", err)
			continue
		}
		s.host.set(hostSigner)
		if err := id.Write(proxyIdentityPath(s.p.cfg.DataDir)); err != nil {
			s.log.Error("save the renewed proxy identity", "err", err)
		}
		s.log.Info("renewed the proxy identity", "expires", certs.Expires)
	}
}

// call runs fn against the auth server in use, moving on to the next when
// one cannot be reached (an answer from auth, even a refusal, is final).
func (s *splitProxy) call(ctx context.Context, fn func(*api.Client) error) error {
	n := len(s.clients)
	start := int(s.cur.Load())
	var err error
	for i := range n {
		k := (start + i) % n
		err = fn(s.clients[k])
		var ae *api.Error
		if err == nil || errors.As(err, &ae) || ctx.Err() != nil {
			if i > 0 {
				s.cur.Store(int32(k))
			}
			return err
		}
	}
	return err
}

// httpHandler forwards every request to auth, with the client's verified
// certificate and address; the health endpoints are the proxy's own.
func (s *splitProxy) httpHandler() http.Handler {
	mux := http.NewServeMux()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			c := s.clients[s.cur.Load()]
			pr.SetURL(&url.URL{Scheme: "https", Host: c.Addr()})
			pr.Out.Host = c.Addr()
			api.ForwardHeaders(pr.Out.Header, verifiedLeaf(pr.In), pr.In.RemoteAddr)
			pr.Out.Header.Del("X-Forwarded-For")
		},
		Transport:     s.forwardTransport(),
		FlushInterval: -1, // watch streams
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("forward to auth", "path", r.URL.Path, "err", err)
			// The next request tries the next auth server.
			if n := len(s.clients); n > 1 {
				s.cur.Store((s.cur.Load() + 1) % int32(n))
			}
			http.Error(w, `{"error":"auth is not reachable from this proxy"}`, http.StatusBadGateway)
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	mux.Handle("/", rp)
	// Kubernetes API requests are the proxy's own (decided with auth).
	mux.Handle(proxy.KubePrefix, s.srv.KubeHandler())
	// `warden join` of the kube sessions held here (or at a peer).
	mux.Handle(proxy.KubeSessionsPrefix, s.srv.KubeSessionsHandler())
	// The web UI is the proxy's own, deciding with auth (splitweb.go).
	if err := s.mountWeb(mux); err != nil {
		s.log.Error("web UI not served", "err", err)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.p.base.Err() != nil {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		if !s.p.ready.Load() || !s.synced.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}

// verifiedLeaf is the request's verified client certificate (nil if none).
func verifiedLeaf(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// forwardTransport calls auth with the proxy's identity, over HTTP/1.1
// (a watch stream then reaches the node with one read).
func (s *splitProxy) forwardTransport() http.RoundTripper {
	pool, _ := s.id.Load().RootCAs()
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.tlsCert.Load(), nil }}
	return &http.Transport{TLSClientConfig: tc, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: 64, TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext}
}

// watch follows auth's roles and locks, reconnecting with jittered
// exponential backoff; every lock change re-checks live connections.
func (s *splitProxy) watch(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		c := s.clients[s.cur.Load()]
		err := c.Watch(ctx, s.apply)
		if ctx.Err() != nil {
			return
		}
		var ae *api.Error
		if !errors.As(err, &ae) && len(s.clients) > 1 {
			s.cur.CompareAndSwap(s.cur.Load(), (s.cur.Load()+1)%int32(len(s.clients)))
		}
		if time.Since(start) > 30*time.Second {
			backoff = 100 * time.Millisecond
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		s.log.Warn("role and lock watch ended; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (s *splitProxy) apply(ev api.WatchEvent) {
	lockChanged := false
	switch {
	case ev.Type == "snapshot":
		m := make(map[string]*policy.Role, len(ev.Roles))
		for _, r := range ev.Roles {
			m[r.Metadata.Name] = r
		}
		s.mu.Lock()
		s.roles, s.requireMFA = m, ev.RequireSessionMFA
		s.mu.Unlock()
		s.locks.Replace(ev.Locks)
		s.synced.Store(true)
		lockChanged = true
	case ev.Kind == "role" && ev.Type == "put" && ev.Role != nil:
		s.mu.Lock()
		if s.roles != nil {
			s.roles[ev.Role.Metadata.Name] = ev.Role
		}
		s.mu.Unlock()
		lockChanged = true // a lock on a role may now match more
	case ev.Kind == "role" && ev.Type == "delete":
		s.mu.Lock()
		delete(s.roles, ev.Name)
		s.mu.Unlock()
	case ev.Kind == "lock" && ev.Type == "put" && ev.Lock != nil:
		s.locks.Put(ev.Lock)
		lockChanged = true
	case ev.Kind == "lock" && ev.Type == "delete":
		s.locks.Delete(ev.Name)
	}
	if lockChanged && s.srv != nil {
		s.srv.ReverifyLocks()
		s.srv.ReverifyKube()
	}
	if (ev.Type == "snapshot" || ev.Kind == "role") && s.srv != nil {
		s.srv.RedecideAgentless() // live agentless connections decided again at auth
	}
}

// rolesOf are the definitions of the named roles in the current view.
func (s *splitProxy) rolesOf(names []string) []*policy.Role {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*policy.Role, 0, len(names))
	for _, n := range names {
		if r, ok := s.roles[n]; ok {
			out = append(out, r)
		}
	}
	return out
}

// publishInventory publishes the nodes whose tunnels end here, on every
// change and at least every third of their TTL.
func (s *splitProxy) publishInventory(ctx context.Context) {
	t := time.NewTicker(inventoryEvery)
	defer t.Stop()
	var last uint64
	var lastAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		nodes := s.srv.Registry().Nodes()
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
		kube := s.srv.KubeClusters()
		sort.Slice(kube, func(i, j int) bool { return kube[i].Name+kube[i].AgentID < kube[j].Name+kube[j].AgentID })
		h := fnv.New64a()
		for _, n := range nodes {
			fmt.Fprintf(h, "%s\x00%s\x00%v\x00%s\x01", n.ID, n.Name, n.Labels, n.Since)
		}
		for _, k := range kube {
			fmt.Fprintf(h, "%s\x00%s\x00%v\x02", k.AgentID, k.Name, k.Labels)
		}
		sum := h.Sum64()
		if sum == last && time.Since(lastAt) < auth.ProxyInventoryTTL/3 {
			continue
		}
		err := s.call(ctx, func(c *api.Client) error {
			return c.PublishProxyInventory(ctx, wire.ProxyInventory{Nodes: nodes, KubeClusters: kube})
		})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("publish the proxy's nodes", "err", err)
			}
			continue
		}
		last, lastAt = sum, time.Now()
	}
}

// The proxy's Directory (proxy.Directory): what needs auth's current
// state asks auth; what follows from the roles and locks is decided from
// the watched view.

func (s *splitProxy) GetNodeRegistration(ctx context.Context, id string) (*auth.NodeRegistration, error) {
	if r, ok := s.regs.Load(id); ok {
		reg := r.(auth.NodeRegistration)
		return &reg, nil
	}
	var reg *auth.NodeRegistration
	err := s.call(ctx, func(c *api.Client) error {
		var err error
		reg, err = c.ProxyNodeRegistration(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.regs.Store(id, *reg)
	return reg, nil
}

func (s *splitProxy) ListNodes(ctx context.Context, c auth.Caller, filter map[string]string) ([]auth.Node, error) {
	if c.Kind != auth.KindUser {
		return nil, fmt.Errorf("%w: the proxy lists nodes for users only", auth.ErrAccessDenied)
	}
	roles := s.rolesOf(c.Roles)
	var out []auth.Node
	// The nodes whose tunnels end here, and with peering those of the
	// live peers; and the agentless servers (splitagentless.go).
	for _, n := range append(s.srv.Inventory().Nodes(), s.agentlessNodes(ctx)...) {
		ok := true
		for k, v := range filter {
			if n.Labels[k] != v {
				ok = false
			}
		}
		if ok && policy.NodeAllowed(roles, c.Traits, policy.Target{NodeName: n.Name, NodeID: n.ID, Labels: n.Labels}) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// CheckLock fails closed until the first view of the locks arrived.
func (s *splitProxy) CheckLock(sub lock.Subject) error {
	if !s.synced.Load() {
		return fmt.Errorf("%w: this proxy has not reached auth yet; try again", auth.ErrAccessDenied)
	}
	if l := s.locks.Check(sub, time.Now()); l != nil {
		return fmt.Errorf("%w: %s", auth.ErrAccessDenied, l.UserMessage())
	}
	return nil
}

func (s *splitProxy) CurrentCaller(ctx context.Context, c auth.Caller, via, remote string) (auth.Caller, error) {
	if c.Kind != auth.KindUser {
		return c, nil
	}
	var cur auth.Caller
	err := s.call(ctx, func(cl *api.Client) error {
		var err error
		cur, err = cl.ProxyCheckUser(ctx, api.ProxyCheckUserRequest{User: c, Via: via, Remote: remote})
		return err
	})
	if err != nil {
		return auth.Caller{}, err
	}
	// Auth answers for the user asked about, and no other.
	if cur.Kind != auth.KindUser || cur.User != c.User {
		return auth.Caller{}, fmt.Errorf("%w: auth answered for another caller", auth.ErrAccessDenied)
	}
	return cur, nil
}

func (s *splitProxy) AuthorizeKube(ctx context.Context, c auth.Caller, cluster auth.KubeCluster, res policy.KubeResource) (policy.KubeDecision, error) {
	var d policy.KubeDecision
	err := s.call(ctx, func(cl *api.Client) error {
		var err error
		d, err = cl.ProxyAuthorizeKube(ctx, api.ProxyKubeRequest{User: c, Cluster: cluster, Resource: res})
		return err
	})
	return d, err
}

func (s *splitProxy) SessionMFANeeded(roles []string, traits map[string][]string, n auth.Node) bool {
	s.mu.RLock()
	cluster := s.requireMFA
	s.mu.RUnlock()
	return policy.SessionMFARequired(s.rolesOf(roles), traits, policy.Target{NodeName: n.Name, NodeID: n.ID, Labels: n.Labels}, cluster)
}

func (s *splitProxy) SpendSessionCert(ctx context.Context, serial uint64, expires time.Time, max int) error {
	return s.call(ctx, func(c *api.Client) error {
		return c.ProxySpendSessionCert(ctx, api.ProxySpendRequest{Serial: serial, Expires: expires, Max: max})
	})
}

// Emit sends the proxy's audit events to auth (audit.Emitter).
func (s *splitProxy) Emit(ctx context.Context, ev audit.Event) error {
	return s.EmitBatch(ctx, []audit.Event{ev})
}

// EmitBatch sends several events in one call (audit.BatchEmitter).
func (s *splitProxy) EmitBatch(ctx context.Context, evs []audit.Event) error {
	return s.call(ctx, func(c *api.Client) error { return c.EmitEvents(ctx, evs) })
}
