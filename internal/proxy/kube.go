package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/tunnel"
)

// Kubernetes through the proxy. kubectl talks HTTPS to the proxy's one
// port with the user's Warden client certificate (the exec credential
// plugin `warden kube credentials` hands it over), at the path prefix
// /kube/CLUSTER/ (path-based routing: no DNS names per cluster). For every
// request the proxy checks the certificate against the current state
// (auth.CurrentCaller), decides the request (auth.AuthorizeKube:
// policy.DecideKube, locks), and forwards it over the tunnel of the kube
// agent serving the cluster, on an HTTP/1.1 connection inside a
// kube-conn channel, with the decision in one header (KubeIdentityHeader)
// that only the proxy writes. The agent removes every Impersonate-* and
// Authorization header and sets Impersonate-User and Impersonate-Group
// from the decision before it sends the request on with its own
// credentials.

const (
	// KubePrefix is where kube API requests arrive on the public port.
	KubePrefix = "/kube/"
	// KubeIdentityHeader carries the decision (KubeIdentity as JSON) from
	// the proxy to the agent. The proxy removes any a client sent.
	KubeIdentityHeader = "X-Warden-Kube-Identity"
	// maxKubeBody bounds a request body (the API server's own limit on an
	// object is 3 MiB).
	maxKubeBody = 8 << 20
)

// KubeIdentity is whom the agent impersonates for one request.
type KubeIdentity struct {
	Cluster string   `json:"cluster"`
	User    string   `json:"user"`
	Groups  []string `json:"groups,omitempty"`
}

type kubeAgent struct {
	id, name  string
	conn      ssh.Conn
	transport *http.Transport
	mu        sync.RWMutex
	clusters  []tunnel.KubeCluster
}

// kubeState is the proxy's live Kubernetes inventory and live requests.
type kubeState struct {
	mu     sync.RWMutex
	agents map[string]*kubeAgent // by registration id
	// byCluster is the agent serving each cluster (the latest to report it).
	byCluster map[string]*kubeAgent
	live      map[*kubeLive]struct{}
	// sessions are the live exec/attach sessions by id (kubejoin.go).
	sessions sync.Map
	events   chan audit.Event
	// callers are the decoded client certificates (kubecallers.go).
	callers kubeCallers
	// onChange is told an agent's clusters changed (peering publishes
	// them); set before serving.
	onChange func(agentID string)
}

// kubeLive is a request in flight (watches, logs -f, exec streams last).
type kubeLive struct {
	sub    lock.Subject
	cancel context.CancelCauseFunc
	// For the periodic re-decision (roles edited, requests expired).
	caller  auth.Caller
	remote  string
	cluster auth.KubeCluster
	res     policy.KubeResource
}

// kubeRedecideInterval is how often live kube requests are decided
// again against the current state (a role's definition changed, an access
// request expired); locks end them at once (ReverifyKube).
const kubeRedecideInterval = 10 * time.Second

// KubeClusters lists the clusters of the connected kube agents.
func (s *Server) KubeClusters() []auth.KubeCluster {
	k := &s.kube
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]auth.KubeCluster, 0, len(k.byCluster))
	for name, a := range k.byCluster {
		a.mu.RLock()
		for _, c := range a.clusters {
			if c.Name == name {
				out = append(out, auth.KubeCluster{Name: c.Name, Labels: maps.Clone(c.Labels), AgentID: a.id})
			}
		}
		a.mu.RUnlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// agentClusters are the clusters agent id serves here (nil if it is not
// connected).
func (k *kubeState) agentClusters(id string) []auth.KubeCluster {
	k.mu.RLock()
	defer k.mu.RUnlock()
	a := k.agents[id]
	if a == nil {
		return nil
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]auth.KubeCluster, 0, len(a.clusters))
	for _, c := range a.clusters {
		if k.byCluster[c.Name] == a {
			out = append(out, auth.KubeCluster{Name: c.Name, Labels: maps.Clone(c.Labels), AgentID: a.id})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// agentIDs are the connected agents.
func (k *kubeState) agentIDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]string, 0, len(k.agents))
	for id := range k.agents {
		out = append(out, id)
	}
	return out
}

func (k *kubeState) cluster(name string) (*kubeAgent, auth.KubeCluster, bool) {
	k.mu.RLock()
	a := k.byCluster[name]
	k.mu.RUnlock()
	if a == nil {
		return nil, auth.KubeCluster{}, false
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, c := range a.clusters {
		if c.Name == name {
			return a, auth.KubeCluster{Name: c.Name, Labels: maps.Clone(c.Labels), AgentID: a.id}, true
		}
	}
	return nil, auth.KubeCluster{}, false
}

func (k *kubeState) setClusters(a *kubeAgent, clusters []tunnel.KubeCluster) {
	k.mu.Lock()
	defer k.mu.Unlock()
	a.mu.Lock()
	old := a.clusters
	a.clusters = clusters
	a.mu.Unlock()
	for _, c := range old {
		if k.byCluster[c.Name] == a {
			delete(k.byCluster, c.Name)
		}
	}
	for _, c := range clusters {
		k.byCluster[c.Name] = a
	}
	k.agents[a.id] = a
}

func (k *kubeState) remove(a *kubeAgent) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.agents[a.id] == a {
		delete(k.agents, a.id)
	}
	for name, b := range k.byCluster {
		if b == a {
			delete(k.byCluster, name)
			// Another agent may serve the same cluster.
			for _, other := range k.agents {
				other.mu.RLock()
				if slices.ContainsFunc(other.clusters, func(c tunnel.KubeCluster) bool { return c.Name == name }) {
					k.byCluster[name] = other
				}
				other.mu.RUnlock()
			}
		}
	}
	a.transport.CloseIdleConnections()
}

// serveKubeTunnel serves a kube agent's tunnel: heartbeats carry its
// clusters; the proxy opens kube-conn channels on it.
func (s *Server) serveKubeTunnel(sconn *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, reg *auth.NodeRegistration) {
	a := &kubeAgent{id: reg.ID, name: reg.Name, conn: sconn}
	a.transport = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			ch, creqs, err := sconn.OpenChannel(tunnel.ChannelKubeConn, nil)
			if err != nil {
				return nil, fmt.Errorf("kube agent %s: %w", reg.Name, err)
			}
			go ssh.DiscardRequests(creqs)
			return tunnel.ChannelConn(ch, sconn.LocalAddr(), sconn.RemoteAddr()), nil
		},
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // watches answer late
		DisableCompression:    true,
	}
	go func() {
		for nc := range chans {
			_ = nc.Reject(ssh.Prohibited, "agents may not open channels on the proxy")
		}
	}()
	first := true
	defer func() {
		if !first {
			s.kube.remove(a)
			if f := s.kube.onChange; f != nil {
				f(a.id)
			}
			s.log.Info("kube agent tunnel closed", "agent", reg.Name, "agent_id", reg.ID)
		}
	}()
	s.serveHeartbeats(sconn, reqs, func(p []byte) error {
		var hb tunnel.Heartbeat
		if err := decodeKubeHeartbeat(p, &hb); err != nil {
			return err
		}
		s.kube.setClusters(a, hb.Kube)
		if f := s.kube.onChange; f != nil {
			f(a.id)
		}
		if first {
			first = false
			s.log.Info("kube agent tunnel up", "agent", reg.Name, "agent_id", reg.ID, "clusters", len(hb.Kube))
		}
		return nil
	})
}

func decodeKubeHeartbeat(p []byte, hb *tunnel.Heartbeat) error {
	if err := decodeHeartbeat(p, hb); err != nil {
		return err
	}
	if len(hb.Kube) > 256 {
		return errors.New("heartbeat: too many kubernetes clusters")
	}
	for _, c := range hb.Kube {
		if !kubeClusterName(c.Name) || len(c.Labels) > 64 {
			return fmt.Errorf("heartbeat: invalid kubernetes cluster %q", c.Name)
		}
		for k, v := range c.Labels {
			if k == "" || len(k) > 256 || len(v) > 256 {
				return fmt.Errorf("heartbeat: invalid label %q", k)
			}
		}
	}
	return nil
}

func kubeClusterName(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	for i, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '.' || r == '_' || r == '-'))
		if !ok {
			return false
		}
	}
	return true
}

// KubeHandler serves Kubernetes API requests under KubePrefix.
func (s *Server) KubeHandler() http.Handler {
	return http.HandlerFunc(s.serveKube)
}

// kubeStatus writes a Kubernetes Status object, which kubectl prints as
// "Error from server (Reason): message".
//
// The message also goes in a Warning header (RFC 7234 form, which
// client-go prints as "Warning: ..."): kubectl shows only "unknown" for
// a refused discovery request (/api, /apis), the first request it makes.
func kubeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Warning", `299 - "`+strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", " ", "\r", " ").Replace(msg)+`"`)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code})
}

func (s *Server) serveKube(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, KubePrefix)
	if !ok {
		kubeStatus(w, http.StatusNotFound, "NotFound", "not found")
		return
	}
	name, _, _ := strings.Cut(rest, "/")
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		kubeStatus(w, http.StatusUnauthorized, "Unauthorized", "warden: a Warden client certificate is required; run: warden kube login "+name)
		return
	}
	c, err := s.kube.callers.get(r.TLS.PeerCertificates[0])
	if err != nil || c.Kind != auth.KindUser {
		kubeStatus(w, http.StatusUnauthorized, "Unauthorized", "warden: only user certificates reach kubernetes clusters")
		return
	}
	s.serveKubeAs(w, r, c, r.RemoteAddr, "")
}

// serveKubeAs serves a Kubernetes API request of the user whose
// certificate identity is c, from address remote: verified here, or by
// peer fromPeer, which forwarded the request (peerkube.go). A request for
// a cluster served through a peer is decided here, then forwarded; one
// that came from a peer is never forwarded again.
func (s *Server) serveKubeAs(w http.ResponseWriter, r *http.Request, c auth.Caller, remote, fromPeer string) {
	rest, ok := strings.CutPrefix(r.URL.Path, KubePrefix)
	if !ok {
		kubeStatus(w, http.StatusNotFound, "NotFound", "not found")
		return
	}
	name, path, _ := strings.Cut(rest, "/")
	path = "/" + path
	// Sized for every field a request gets (no growth on the way).
	fields := make(map[string]any, 16)
	fields["cluster"], fields["method"], fields["path"] = name, r.Method, truncate(path, 512)
	ev := audit.Event{Event: audit.KubeRequest, User: c.User, RemoteAddr: remote, Fields: fields}
	if fromPeer != "" {
		ev.Fields["from_proxy"] = fromPeer
	}
	refuse := func(code int, reason, msg string) {
		ev.Error = msg
		ev.Fields["status"] = code
		s.kubeAudit(ev)
		kubeStatus(w, code, reason, "warden: "+msg)
	}
	cur, err := s.cfg.Directory.CurrentCaller(r.Context(), c, "kube", remote)
	if err != nil {
		refuse(http.StatusForbidden, "Forbidden", kubeReason(err))
		return
	}
	query := r.URL.Query()
	res, err := parseKubeRequest(r.Method, path, query)
	if err != nil {
		refuse(http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	ev.Fields["verb"], ev.Fields["resource"], ev.Fields["namespace"], ev.Fields["name"] = res.Verb, res.Kind, res.Namespace, res.Name
	if cmd := query["command"]; len(cmd) > 0 {
		ev.Fields["command"] = truncate(strings.Join(cmd, " "), 1024)
	}
	agent, cluster, found := s.kube.cluster(name)
	var peer *proxyRecord
	if !found && s.peers != nil && fromPeer == "" {
		// Its agent is connected to a peer: decided here, then forwarded.
		if pr, pc, ok := s.peers.kubeOwner(name); ok {
			peer, cluster, found = &pr, pc, true
			ev.Fields["via_proxy"] = pr.ID
		}
	}
	if !found {
		// The same answer whether the cluster does not exist or is not
		// connected: a name tells nothing more than that.
		refuse(http.StatusForbidden, "Forbidden", fmt.Sprintf("kubernetes cluster %q is not connected or not allowed by your roles (see: warden kube ls)", name))
		return
	}
	sub := cur.LockSubject()
	sub.Node = cluster.Name
	if err := s.cfg.Directory.CheckLock(sub); err != nil {
		refuse(http.StatusForbidden, "Forbidden", kubeReason(err))
		return
	}
	d, err := s.cfg.Directory.AuthorizeKube(r.Context(), cur, cluster, res)
	if err != nil {
		ev.Fields["detail"] = d.Detail
		refuse(http.StatusForbidden, "Forbidden", kubeReason(err))
		return
	}
	ev.Fields["impersonate_user"], ev.Fields["impersonate_groups"] = d.User, d.Groups
	id, _ := json.Marshal(KubeIdentity{Cluster: cluster.Name, User: d.User, Groups: d.Groups})

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	live := &kubeLive{sub: sub, cancel: cancel, caller: c, remote: remote, cluster: cluster, res: res}
	s.kube.mu.Lock()
	s.kube.live[live] = struct{}{}
	s.kube.mu.Unlock()
	defer func() {
		s.kube.mu.Lock()
		delete(s.kube.live, live)
		s.kube.mu.Unlock()
	}()
	// A lock made between the check above and the registration.
	if err := s.cfg.Directory.CheckLock(sub); err != nil {
		refuse(http.StatusForbidden, "Forbidden", kubeReason(err))
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxKubeBody)
	}
	rec := &statusRecorder{ResponseWriter: w}
	var transport http.RoundTripper
	target := path
	if peer != nil {
		// The peer decides again, records exec and attach, and audits.
		transport = s.peerKubeTransport(*peer, cluster, c, remote)
		target = KubePrefix + name + path
	} else {
		// exec and attach streams are audited and recorded (kuberec.go).
		transport = s.kubeSessionTransport(agent.transport, live, agent.id, query)
	}
	rp := &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := pr.Out
			out.URL.Scheme, out.URL.Host = "http", "kube-agent"
			// Exactly the path that was decided on.
			out.URL.Path, out.URL.RawPath = target, ""
			out.Host = "kube-agent"
			stripKubeCredentials(out.Header)
			for k := range out.Header {
				if strings.HasPrefix(http.CanonicalHeaderKey(k), "X-Warden-") {
					delete(out.Header, k)
				}
			}
			out.Header.Set(KubeIdentityHeader, string(id))
		},
		// Streaming responses (watch, logs -f: no Content-Length) are
		// flushed at every write anyway; one of known length goes out
		// whole, in one write (one tunnel packet) rather than one per copy.
		FlushInterval: 0,
		BufferPool:    kubeBuffers,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
				kubeStatus(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
					fmt.Sprintf("warden: the request body is larger than %d bytes", maxKubeBody))
				return
			}
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				err = cause
			}
			if msg, ok := errIsPeerRefusal(err); ok {
				kubeStatus(w, http.StatusForbidden, "Forbidden", "warden: "+msg)
				return
			}
			kubeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable",
				fmt.Sprintf("warden: kubernetes cluster %q is unreachable: %v", cluster.Name, err))
		},
		ErrorLog: nil,
	}
	rp.ServeHTTP(rec, r.WithContext(ctx))
	ev.Success = rec.code() < 400
	ev.Fields["status"] = rec.code()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		ev.Fields["ended"] = cause.Error()
	}
	s.kubeAudit(ev)
}

// stripKubeCredentials removes what a client could use to speak for
// someone else: impersonation and bearer credentials. Both the proxy and
// the agent do it.
func stripKubeCredentials(h http.Header) {
	for k := range h {
		ck := http.CanonicalHeaderKey(k)
		if strings.HasPrefix(ck, "Impersonate-") || ck == "Authorization" || ck == "Proxy-Authorization" {
			delete(h, k)
		}
	}
}

func kubeReason(err error) string {
	msg := err.Error()
	for _, p := range []string{"access denied: ", "unauthenticated: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// ReverifyKube ends live Kubernetes requests (watches, logs -f, exec,
// attach, port-forward) that a lock now matches; auth calls it whenever
// the locks change.
func (s *Server) ReverifyKube() {
	s.kube.mu.RLock()
	var matched []*kubeLive
	var errs []error
	for l := range s.kube.live {
		if err := s.cfg.Directory.CheckLock(l.sub); err != nil {
			matched = append(matched, l)
			errs = append(errs, err)
		}
	}
	s.kube.mu.RUnlock()
	for i, l := range matched {
		l.cancel(errors.New(kubeReason(errs[i])))
	}
}

// redecideKube decides every live kube request again, as if it were
// made now, and ends those no longer allowed.
func (s *Server) redecideKube() {
	s.kube.mu.RLock()
	live := make([]*kubeLive, 0, len(s.kube.live))
	for l := range s.kube.live {
		live = append(live, l)
	}
	s.kube.mu.RUnlock()
	ctx := context.Background()
	for _, l := range live {
		cur, err := s.cfg.Directory.CurrentCaller(ctx, l.caller, "kube", l.remote)
		if err == nil {
			_, err = s.cfg.Directory.AuthorizeKube(ctx, cur, l.cluster, l.res)
		}
		if err != nil {
			l.cancel(errors.New(kubeReason(err)))
		}
	}
}

func (s *Server) runKubeRedecide() {
	t := time.NewTicker(kubeRedecideInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.redecideKube()
		case <-s.shutdown:
			return
		}
	}
}

// statusRecorder remembers the response status; Unwrap lets the reverse
// proxy flush and hijack (upgrades) through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
