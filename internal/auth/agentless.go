package auth

import (
	"bufio"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

const (
	prefixAgentless = "/agentless/"
	// DefaultHostCertTTL is how long a host certificate from warden sign
	// is valid unless asked otherwise.
	DefaultHostCertTTL = 30 * 24 * time.Hour
	// AgentlessHostIDPrefix starts the key ID of a host certificate issued
	// for an agentless server's sshd (warden sign --host): "agentless.NAME".
	AgentlessHostIDPrefix = "agentless."
	// SessionCertTTL is how long the certificate the proxy presents to an
	// agentless server's sshd, for one login, is valid.
	SessionCertTTL = time.Minute
	// agentlessProbeTimeout bounds one reachability probe of warden nodes
	// ls (connect and SSH version line).
	agentlessProbeTimeout = 2 * time.Second
	// AgentlessProbeConcurrency bounds the probes of one listing running
	// at once.
	AgentlessProbeConcurrency = 32
	// agentlessProbeBudget bounds a whole listing's probing: servers whose
	// probe has not started by then are listed as not probed.
	agentlessProbeBudget = 6 * time.Second
)

// AgentlessNode is wire.AgentlessNode: the API carries it.
type AgentlessNode = wire.AgentlessNode

// agentlessRecord is an agentless server as stored.
type agentlessRecord struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Addr      string            `json:"addr"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
}

// agentlessState is what auth keeps in memory about agentless servers.
type agentlessState struct {
	mu sync.Mutex
	// krlFetched is when each server (by name) last fetched the KRL.
	krlFetched map[string]time.Time
	// krl is the last KRL built (cachedKRL).
	krl *krlCache
	// issued mirrors the issued-certificate records (prefixIssued) in
	// memory, for the KRL: a feed, like the locks'.
	issued    *feed
	issuedMu  sync.RWMutex
	issuedSet map[string]*issuedCert
}

// SignHostCert issues a host certificate for a server's own sshd host key,
// so that clients (and the proxy) verify the server by Warden's host CA.
func (s *Server) SignHostCert(ctx context.Context, c Caller, req wire.SignHostRequest) (*wire.SignHostResponse, error) {
	if err := s.authorize(c, "SignHostCert"); err != nil {
		return nil, err
	}
	if err := validateNodeName("server name", req.Name); err != nil {
		return nil, err
	}
	pub, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	if req.TTL == 0 {
		req.TTL = DefaultHostCertTTL
	}
	if req.TTL < 0 || req.TTL > ca.MaxCertTTL {
		return nil, badRequest("TTL %s out of range (at most %s)", req.TTL, ca.MaxCertTTL)
	}
	principals := uniq(append([]string{req.Name}, req.Principals...))
	cert, err := s.ca.IssueHost(ca.HostCertRequest{PublicKey: pub, HostID: AgentlessHostIDPrefix + req.Name, Principals: principals, TTL: req.TTL})
	if err != nil {
		return nil, badRequest("%v", err)
	}
	expires := time.Unix(int64(cert.ValidBefore), 0).UTC()
	resp := &wire.SignHostResponse{Cert: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))), Principals: principals, Expires: expires}
	// A server registered as agentless also gets an API identity for the
	// same key, with which it fetches the KRL (warden krl sync), and
	// nothing else.
	var rec agentlessRecord
	switch err := s.getJSON(ctx, prefixAgentless+req.Name, &rec); {
	case err == nil:
		der, err := s.ca.IssueTLSClient(cryptoPublicKey(pub), ca.TLSIdentity{Kind: KindNode, NodeID: AgentlessHostIDPrefix + req.Name}, req.TTL)
		if err != nil {
			return nil, fmt.Errorf("issue KRL identity: %w", err)
		}
		resp.TLSCert = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		resp.TLSCA = string(s.ca.TLSCAPEM())
	case !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}
	s.emit(ctx, audit.Event{Event: audit.CertIssued, User: c.Name(), Node: req.Name, Success: true,
		Fields: map[string]any{"cert_type": "host", "agentless": true, "principals": principals, "expires": expires,
			"serial": fmt.Sprint(cert.Serial), "krl_identity": resp.TLSCert != ""}})
	return resp, nil
}

// validateAgentless checks an agentless server's spec.
func validateAgentless(n *AgentlessNode) error {
	if n.Kind != "" && n.Kind != wire.KindAgentlessNode {
		return badRequest("kind %q is not %s", n.Kind, wire.KindAgentlessNode)
	}
	if err := validateNodeName("server name", n.Metadata.Name); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(n.Spec.Addr)
	if err != nil || host == "" || port == "" || len(n.Spec.Addr) > 256 {
		return badRequest("invalid address %q: use host:port (sshd's, as the proxy reaches it)", n.Spec.Addr)
	}
	if len(n.Spec.Labels) > 64 {
		return badRequest("too many labels (at most 64)")
	}
	for k, v := range n.Spec.Labels {
		if k == "" || len(k) > 256 || len(v) > 256 || strings.ContainsAny(k, "=\n") {
			return badRequest("invalid label %q", k)
		}
	}
	return nil
}

// UpsertAgentlessNode registers an agentless server, or updates its
// address and labels. It keeps its node id across updates.
func (s *Server) UpsertAgentlessNode(ctx context.Context, c Caller, n *AgentlessNode) error {
	if err := s.authorize(c, "UpsertAgentlessNode"); err != nil {
		return err
	}
	if err := validateAgentless(n); err != nil {
		return err
	}
	key := prefixAgentless + n.Metadata.Name
	var rec agentlessRecord
	err := s.getJSON(ctx, key, &rec)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		id, err := newNodeID()
		if err != nil {
			return err
		}
		rec = agentlessRecord{ID: id, Name: n.Metadata.Name, CreatedAt: s.now().UTC()}
		// A registration like a joined node's: recordings and session
		// events name the server by it.
		reg := NodeRegistration{ID: id, Name: rec.Name, Hostname: rec.Name, JoinedAt: rec.CreatedAt}
		if err := s.createJSON(ctx, prefixNodeReg+id, reg, time.Time{}); err != nil {
			return fmt.Errorf("register server: %w", err)
		}
	case err != nil:
		return err
	}
	rec.Addr, rec.Labels = n.Spec.Addr, maps.Clone(n.Spec.Labels)
	if err := s.putJSON(ctx, key, rec, time.Time{}); err != nil {
		return err
	}
	s.emit(ctx, audit.Event{Event: audit.NodeJoin, User: c.Name(), Node: rec.Name, Success: true,
		Fields: map[string]any{"node_id": rec.ID, "agentless": true, "addr": rec.Addr, "labels": rec.Labels}})
	return nil
}

// DeleteAgentlessNode removes an agentless server.
func (s *Server) DeleteAgentlessNode(ctx context.Context, c Caller, name string) error {
	if err := s.authorize(c, "DeleteAgentlessNode"); err != nil {
		return err
	}
	var rec agentlessRecord
	if err := s.getJSON(ctx, prefixAgentless+name, &rec); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("agentless server %q %w", name, storage.ErrNotFound)
		}
		return err
	}
	if err := s.b.Delete(ctx, prefixAgentless+name); err != nil {
		return err
	}
	s.emit(ctx, audit.Event{Event: audit.NodeDelete, User: c.Name(), Node: rec.Name, Success: true,
		Fields: map[string]any{"node_id": rec.ID, "agentless": true, "addr": rec.Addr}})
	return nil
}

// ListAgentlessNodes lists agentless servers with what Warden sees of them
// now: whether sshd answers, and when the server last fetched the KRL.
func (s *Server) ListAgentlessNodes(ctx context.Context, c Caller) ([]AgentlessNode, error) {
	if err := s.authorize(c, "ListAgentlessNodes"); err != nil {
		return nil, err
	}
	recs, err := listJSON[agentlessRecord](ctx, s.b, prefixAgentless)
	if err != nil {
		return nil, err
	}
	out := make([]AgentlessNode, len(recs))
	// The probes run concurrently, at most AgentlessProbeConcurrency at
	// once, each bounded by agentlessProbeTimeout and all together by
	// agentlessProbeBudget: a listing of many unreachable servers takes
	// seconds, not a timeout per server.
	probeCtx, cancel := context.WithTimeout(ctx, agentlessProbeBudget)
	defer cancel()
	slots := make(chan struct{}, AgentlessProbeConcurrency)
	var wg sync.WaitGroup
	for i, r := range recs {
		n := &out[i]
		n.Kind = wire.KindAgentlessNode
		n.Metadata.Name = r.Name
		n.Spec = wire.AgentlessSpec{Addr: r.Addr, Labels: r.Labels}
		n.Status = &wire.AgentlessStatus{ID: r.ID, CreatedAt: r.CreatedAt, KRLFetched: s.krlFetchedAt(r.Name)}
		select {
		case slots <- struct{}{}:
		case <-probeCtx.Done():
			n.Status.Error = "not probed: too many servers to probe in time"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := ProbeSSH(probeCtx, r.Addr, agentlessProbeTimeout); err != nil {
				n.Status.Error = err.Error()
			} else {
				n.Status.Reachable = true
			}
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Metadata.Name < out[j].Metadata.Name })
	return out, nil
}

// ProbeSSH reports whether an SSH server answers at addr with its version.
func ProbeSSH(ctx context.Context, addr string, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(&limitedConn{conn, 256}).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no SSH version from %s: %v", addr, err)
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("%s did not answer as an SSH server", addr)
	}
	return nil
}

type limitedConn struct {
	net.Conn
	left int
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errors.New("answer too long")
	}
	if len(p) > l.left {
		p = p[:l.left]
	}
	n, err := l.Conn.Read(p)
	l.left -= n
	return n, err
}

// agentlessNodes are the agentless servers as inventory nodes.
func (s *Server) agentlessNodes(ctx context.Context) []Node {
	recs, err := listJSON[agentlessRecord](ctx, s.b, prefixAgentless)
	if err != nil {
		s.log.Warn("list agentless servers", "err", err)
		return nil
	}
	out := make([]Node, 0, len(recs))
	for _, r := range recs {
		out = append(out, Node{ID: r.ID, Name: r.Name, Hostname: r.Name, Labels: maps.Clone(r.Labels),
			Version: "agentless", Since: r.CreatedAt, LastSeen: r.CreatedAt, Agentless: true, Addr: r.Addr})
	}
	return out
}

func (s *Server) krlFetchedAt(name string) time.Time {
	s.agentless.mu.Lock()
	defer s.agentless.mu.Unlock()
	return s.agentless.krlFetched[name]
}

// AgentlessDecision is what the proxy may let a user do on an agentless
// server: the options of the roles that allowed the login.
type AgentlessDecision struct {
	Caller  Caller
	Options policy.EffectiveOptions
}

// AuthorizeAgentless is the access decision for a login on an agentless
// server, made at the proxy: the same as a node makes (node.Access:
// policy.Decide against the user's current roles, then the locks on the
// user, roles, login, node, requests and MFA device). user is the
// certificate's identity; it is checked against the current state first
// (CurrentCaller).
func (s *Server) AuthorizeAgentless(ctx context.Context, c Caller, user Caller, node Node, login, remote string) (*AgentlessDecision, error) {
	if err := s.authorize(c, "AuthorizeAgentless"); err != nil {
		return nil, err
	}
	cur, err := s.CurrentCaller(ctx, user, "proxy", remote)
	if err != nil {
		return nil, err
	}
	// The server as registered now: removed or re-registered (another id),
	// it is not reached; its labels are the current ones.
	var rec agentlessRecord
	switch err := s.getJSON(ctx, prefixAgentless+node.Name, &rec); {
	case errors.Is(err, storage.ErrNotFound):
		return nil, denied("server %q was removed", node.Name)
	case err != nil:
		return nil, err
	case rec.ID != node.ID:
		return nil, denied("server %q was registered again", node.Name)
	}
	node.Labels, node.Addr = rec.Labels, rec.Addr
	d := policy.Decide(policy.Request{
		Identity: policy.Identity{User: cur.User, Roles: cur.Roles, Traits: cur.Traits},
		Roles:    s.roles.get(cur.Roles),
		Target:   policy.Target{Login: login, NodeName: node.Name, NodeID: node.ID, Labels: node.Labels},
	})
	if !d.Allowed {
		return nil, &policy.DeniedError{Reason: d.Reason, Detail: d.Detail}
	}
	sub := cur.LockSubject()
	sub.Login, sub.Node, sub.NodeID = login, node.Name, node.ID
	if err := s.CheckLock(sub); err != nil {
		return nil, err
	}
	return &AgentlessDecision{Caller: cur, Options: d.Options}, nil
}

// IssueAgentlessCert issues the certificate the proxy presents to an
// agentless server's sshd for one login of one user: valid SessionCertTTL,
// with that login as its only principal, the user's name as key ID, and
// the source address pinned when given. The user never sees it.
func (s *Server) IssueAgentlessCert(ctx context.Context, c Caller, user Caller, node Node, login string, pub ssh.PublicKey,
	opts policy.EffectiveOptions, source string) (*ssh.Certificate, error) {
	if err := s.authorize(c, "IssueAgentlessCert"); err != nil {
		return nil, err
	}
	cert, err := s.ca.IssueUser(ca.UserCertRequest{
		PublicKey: pub, Username: user.User, Principals: []string{login, ca.InternalPrincipalPrefix + user.User},
		Roles: user.Roles, RequestIDs: user.RequestIDs, Issued: user.Issued, MFADevice: user.MFADevice,
		TTL: SessionCertTTL, PermitPTY: opts.PermitPTY, PermitPortForwarding: opts.PortForwarding,
		SourceAddress: source,
	})
	if err != nil {
		return nil, err
	}
	if err := s.recordIssued(ctx, cert, user); err != nil {
		return nil, err
	}
	s.emit(ctx, audit.Event{Event: audit.CertIssued, User: user.User, Login: login, Node: node.Name, Success: true,
		Fields: map[string]any{"cert_type": "user", "agentless_session": true, "node_id": node.ID, "serial": cert.Serial,
			"expires": time.Unix(int64(cert.ValidBefore), 0).UTC()}})
	return cert, nil
}
