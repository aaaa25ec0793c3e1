package auth

import (
	"context"
	"crypto"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// A proxy that runs apart from auth (`warden start --services proxy`)
// joins with a proxy join token, like a node: auth registers it and issues
// its identity, which it renews before expiry with that identity. The
// identity is three certificates for one key: an API client certificate
// of kind "proxy" (the caller auth trusts to speak for the users and nodes
// whose certificates the proxy verified, and nothing else: api.forwarded),
// an SSH host certificate and a TLS server certificate for the names users
// and nodes reach the proxy by.

// RegistrationProxy is NodeRegistration.Kind of a proxy.
const RegistrationProxy = wire.TokenTypeProxy

// ProxyCertTTL is the validity of a proxy's certificates; it renews them
// in the last third of their life.
const ProxyCertTTL = 24 * time.Hour

// maxProxyPrincipals bounds the names a proxy asks certificates for.
const maxProxyPrincipals = 32

// ProxyCerts is wire.ProxyCerts: the API carries it.
type ProxyCerts = wire.ProxyCerts

// ProxyJoinResponse is wire.ProxyJoinResponse: the API carries it.
type ProxyJoinResponse = wire.ProxyJoinResponse

// JoinProxy registers a proxy with a proxy join token and issues its
// identity for the principals it names.
func (s *Server) JoinProxy(ctx context.Context, req JoinRequest) (*ProxyJoinResponse, error) {
	pub, err := checkJoin("proxy name", req)
	if err != nil {
		return nil, err
	}
	principals, err := proxyPrincipals(req.Principals)
	if err != nil {
		return nil, err
	}
	if req.Kind != "" && req.Kind != wire.TokenTypeProxy {
		return nil, badRequest("a proxy joins with kind %q, not %q", wire.TokenTypeProxy, req.Kind)
	}
	if err := s.useToken(ctx, req.Token, wire.TokenTypeProxy, req.RemoteAddr); err != nil {
		return nil, err
	}
	id, err := newNodeID()
	if err != nil {
		return nil, err
	}
	reg := NodeRegistration{ID: id, Name: req.Name, Hostname: req.Hostname, JoinedAt: s.now().UTC(),
		Kind: RegistrationProxy, Principals: principals}
	if err := s.createJSON(ctx, prefixNodeReg+id, reg, time.Time{}); err != nil {
		return nil, fmt.Errorf("register proxy: %w", err)
	}
	certs, err := s.issueProxyCerts(ctx, reg, pub)
	if err != nil {
		return nil, err
	}
	s.emit(ctx, audit.Event{Event: audit.NodeJoin, Node: req.Name, RemoteAddr: req.RemoteAddr, Success: true,
		Fields: map[string]any{"proxy_id": id, "hostname": req.Hostname, "kind": RegistrationProxy, "principals": principals}})
	return &ProxyJoinResponse{ProxyCerts: *certs, ProxyID: id}, nil
}

// currentProxy refuses a proxy running apart whose registration is gone,
// or that a lock on it (warden lock --node PROXY-ID or its name) revokes:
// every call it makes for itself or its clients is then refused.
func (s *Server) currentProxy(ctx context.Context, c Caller) error {
	reg, err := s.GetNodeRegistration(ctx, c.NodeID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && reg.Kind != RegistrationProxy) {
		return fmt.Errorf("%w: proxy %s is not registered", ErrUnauthenticated, c.NodeID)
	}
	if err != nil {
		return err
	}
	return s.CheckLock(lock.Subject{Node: reg.Name, NodeID: reg.ID})
}

// RenewProxyCerts re-issues a joined proxy's certificates (called by the
// proxy with its current identity, before expiry).
func (s *Server) RenewProxyCerts(ctx context.Context, c Caller, publicKey string) (*ProxyCerts, error) {
	if err := s.authorize(c, "RenewProxyCerts"); err != nil {
		return nil, err
	}
	if c.NodeID == "" {
		return nil, fmt.Errorf("%w: only a joined proxy renews proxy certificates", ErrUnauthenticated)
	}
	pub, err := parsePublicKey(publicKey)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	reg, err := s.GetNodeRegistration(ctx, c.NodeID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && reg.Kind != RegistrationProxy) {
		return nil, fmt.Errorf("%w: proxy %s is no longer registered", ErrUnauthenticated, c.NodeID)
	}
	if err != nil {
		return nil, err
	}
	return s.issueProxyCerts(ctx, *reg, pub)
}

func (s *Server) issueProxyCerts(ctx context.Context, reg NodeRegistration, sshPub ssh.PublicKey) (*ProxyCerts, error) {
	ttl := ProxyCertTTL
	if s.cfg.NodeCertTTL > 0 && s.cfg.NodeCertTTL < ttl {
		ttl = s.cfg.NodeCertTTL
	}
	// The host certificate's key id is "proxy", as the proxy in auth's
	// process: no node registration has that id, so it opens no tunnel.
	cert, err := s.ca.IssueHost(ca.HostCertRequest{PublicKey: sshPub, HostID: "proxy", Principals: reg.Principals, TTL: ttl})
	if err != nil {
		return nil, fmt.Errorf("issue proxy host certificate: %w", err)
	}
	pub := cryptoPublicKey(sshPub)
	der, err := s.ca.IssueTLSClient(pub, ca.TLSIdentity{Kind: KindProxy, NodeID: reg.ID}, ttl)
	if err != nil {
		return nil, fmt.Errorf("issue proxy tls client certificate: %w", err)
	}
	srv, err := s.issueProxyServer(pub, reg.Principals, ttl)
	if err != nil {
		return nil, err
	}
	expires := time.Unix(int64(cert.ValidBefore), 0).UTC()
	s.emit(ctx, audit.Event{Event: audit.CertIssued, Node: reg.Name, Success: true,
		Fields: map[string]any{"cert_type": "proxy", "proxy_id": reg.ID, "principals": reg.Principals, "expires": expires}})
	return &ProxyCerts{Certs: s.certs(cert, der, expires), TLSServerCert: pemCertificate(srv)}, nil
}

func (s *Server) issueProxyServer(pub crypto.PublicKey, principals []string, ttl time.Duration) ([]byte, error) {
	var names []string
	var ips []net.IP
	for _, p := range principals {
		if ip := net.ParseIP(p); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			ips = append(ips, ip)
		} else {
			names = append(names, p)
		}
	}
	der, err := s.ca.IssueTLSServer(pub, names, ips, ttl)
	if err != nil {
		return nil, fmt.Errorf("issue proxy tls server certificate: %w", err)
	}
	return der, nil
}

// proxyPrincipals validates the names a proxy asks for: host names or IP
// addresses, at least one, at most maxProxyPrincipals.
func proxyPrincipals(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, badRequest("a proxy names the host names or addresses it is reached by (proxy public_addr)")
	}
	if len(in) > maxProxyPrincipals {
		return nil, badRequest("%d proxy names, at most %d", len(in), maxProxyPrincipals)
	}
	out := make([]string, 0, len(in))
	for _, p := range in {
		if net.ParseIP(p) == nil {
			if err := validateNodeName("proxy host name", p); err != nil {
				return nil, err
			}
			if strings.HasPrefix(p, "-") || strings.Contains(p, "..") {
				return nil, badRequest("invalid proxy host name %q", p)
			}
		}
		out = append(out, p)
	}
	return uniq(out), nil
}

// What a proxy running apart asks of auth, with its proxy identity (the
// in-process proxy calls the methods these wrap directly). Each is for
// proxies only: the user a proxy speaks for is one whose certificate it
// verified, and no other caller may speak for anyone.

// ProxyCheckUser is CurrentCaller for the user whose certificate a proxy
// verified (user is the caller that certificate describes).
func (s *Server) ProxyCheckUser(ctx context.Context, c Caller, user Caller, via, remote string) (Caller, error) {
	if err := s.authorize(c, "ProxyCheckUser"); err != nil {
		return Caller{}, err
	}
	if user.Kind != KindUser {
		return Caller{}, badRequest("a proxy speaks for users only, not %q", user.Kind)
	}
	return s.CurrentCaller(ctx, user, via, remote)
}

// ProxyNodeRegistration is GetNodeRegistration for a proxy: the
// registration of a node (or kube agent) opening a tunnel to it. A
// proxy's own registration is not one.
func (s *Server) ProxyNodeRegistration(ctx context.Context, c Caller, id string) (*NodeRegistration, error) {
	if err := s.authorize(c, "ProxyNodeRegistration"); err != nil {
		return nil, err
	}
	reg, err := s.GetNodeRegistration(ctx, id)
	if err != nil {
		return nil, err
	}
	if reg.Kind == RegistrationProxy {
		return nil, fmt.Errorf("%s is a proxy, not a node: %w", id, storage.ErrNotFound)
	}
	return reg, nil
}

// ProxySpendSessionCert is SpendSessionCert for a proxy.
func (s *Server) ProxySpendSessionCert(ctx context.Context, c Caller, serial uint64, expires time.Time, max int) error {
	if err := s.authorize(c, "ProxySpendSessionCert"); err != nil {
		return err
	}
	err := s.SpendSessionCert(ctx, serial, expires, max)
	if errors.Is(err, errSessionCertSpent) {
		return fmt.Errorf("%w: %v", ErrAccessDenied, err)
	}
	return err
}

// The node inventory of proxies running apart: each publishes the nodes
// whose tunnels end at it (PublishProxyInventory), stored with a TTL
// under its id, so that every auth instance lists every proxy's nodes
// (warden ls, the per-session MFA check). A proxy that stops publishing
// drops out when the TTL ends.
const (
	prefixProxyInventory = "/proxyinventory/"
	// ProxyInventoryTTL is how long a published inventory lives; proxies
	// publish on every change and at least every third of it.
	ProxyInventoryTTL = 30 * time.Second
	// maxProxyInventory bounds the nodes one proxy publishes.
	maxProxyInventory = 20000
	// inventoryFresh is how long auth reuses what it read of the
	// published inventories.
	inventoryFresh = 250 * time.Millisecond
)

// ProxyInventory is wire.ProxyInventory: the API carries it.
type ProxyInventory = wire.ProxyInventory

// PublishProxyInventory stores the calling proxy's live nodes and
// Kubernetes clusters.
func (s *Server) PublishProxyInventory(ctx context.Context, c Caller, inv ProxyInventory) error {
	if err := s.authorize(c, "PublishProxyInventory"); err != nil {
		return err
	}
	if c.NodeID == "" {
		return fmt.Errorf("%w: only a joined proxy publishes its nodes", ErrUnauthenticated)
	}
	nodes := inv.Nodes
	if len(nodes)+len(inv.KubeClusters) > maxProxyInventory {
		return badRequest("%d nodes and clusters, at most %d per proxy", len(nodes)+len(inv.KubeClusters), maxProxyInventory)
	}
	for _, k := range inv.KubeClusters {
		reg, err := s.GetNodeRegistration(ctx, k.AgentID)
		if err != nil {
			return badRequest("kube agent %s: %v", k.AgentID, err)
		}
		if reg.Kind != RegistrationKube {
			return badRequest("%s is not a kube agent", k.AgentID)
		}
		if err := validateNodeName("kubernetes cluster name", k.Name); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		if n.Agentless {
			return badRequest("a proxy publishes the nodes of its tunnels, not agentless servers")
		}
		// Only registered nodes: a proxy cannot invent one.
		reg, err := s.GetNodeRegistration(ctx, n.ID)
		if err != nil {
			return badRequest("node %s: %v", n.ID, err)
		}
		if reg.Kind != "" || reg.Name != n.Name || reg.Hostname != n.Hostname {
			return badRequest("node %s is not the registered node %q", n.ID, reg.Name)
		}
	}
	err := s.putJSON(ctx, prefixProxyInventory+c.NodeID, inv, s.now().Add(ProxyInventoryTTL))
	if err == nil {
		s.inventoryCache.Store(nil) // read afresh
	}
	return err
}

// StoredInventory is the inventory auth lists in a deployment whose
// proxies run apart: the nodes every proxy published.
func (s *Server) StoredInventory() Inventory { return storedInventory{s} }

// StoredKubeInventory is StoredInventory for Kubernetes clusters.
func (s *Server) StoredKubeInventory() KubeInventory { return storedInventory{s} }

type storedInventory struct{ s *Server }

type cachedInventory struct {
	at    time.Time
	nodes []Node
	kube  []KubeCluster
}

func (i storedInventory) Nodes() []Node { return i.read().nodes }

func (i storedInventory) KubeClusters() []KubeCluster { return i.read().kube }

func (i storedInventory) read() *cachedInventory {
	s := i.s
	if c := s.inventoryCache.Load(); c != nil && time.Since(c.at) < inventoryFresh {
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	items, err := s.b.List(ctx, prefixProxyInventory, 0)
	if err != nil {
		s.log.Warn("cannot read the proxies' node inventory", "err", err)
		return &cachedInventory{}
	}
	byID := map[string]Node{}
	kube := map[string]KubeCluster{}
	for _, it := range items {
		var inv ProxyInventory
		if err := json.Unmarshal(it.Value, &inv); err != nil {
			continue
		}
		for _, n := range inv.Nodes {
			// A node that moved keeps its newest tunnel.
			if o, ok := byID[n.ID]; !ok || n.Since.After(o.Since) {
				byID[n.ID] = n
			}
		}
		for _, k := range inv.KubeClusters {
			kube[k.Name+"\x00"+k.AgentID] = k
		}
	}
	c := &cachedInventory{at: time.Now(), nodes: make([]Node, 0, len(byID)), kube: make([]KubeCluster, 0, len(kube))}
	for _, n := range byID {
		c.nodes = append(c.nodes, n)
	}
	for _, k := range kube {
		c.kube = append(c.kube, k)
	}
	s.inventoryCache.Store(c)
	return c
}

// ProxyAuthorizeKube is AuthorizeKube for the user whose certificate a
// proxy verified (user is their caller as the proxy last had it checked;
// it is checked again here).
func (s *Server) ProxyAuthorizeKube(ctx context.Context, c Caller, user Caller, cluster KubeCluster, res policy.KubeResource) (policy.KubeDecision, error) {
	if err := s.authorize(c, "ProxyAuthorizeKube"); err != nil {
		return policy.KubeDecision{}, err
	}
	if user.Kind != KindUser {
		return policy.KubeDecision{}, badRequest("a proxy speaks for users only, not %q", user.Kind)
	}
	cur, err := s.currentCaller(ctx, user)
	if err != nil {
		return policy.KubeDecision{}, err
	}
	return s.AuthorizeKube(ctx, cur, cluster, res)
}

func pemCertificate(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
