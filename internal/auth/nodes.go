package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

const (
	prefixNodeReg = "/nodereg/"
	// maxTokenTTL bounds join token lifetimes.
	maxTokenTTL = 7 * 24 * time.Hour
)

// Token is wire.Token: the API carries it.
type Token = wire.Token

// CreateTokenRequest is wire.CreateTokenRequest: the API carries it.
type CreateTokenRequest = wire.CreateTokenRequest

// TokenResult is wire.TokenResult: the API carries it.
type TokenResult = wire.TokenResult

// CreateToken issues a join token.
func (s *Server) CreateToken(ctx context.Context, c Caller, req CreateTokenRequest) (*TokenResult, error) {
	if err := s.authorize(c, "CreateToken"); err != nil {
		return nil, err
	}
	if req.Type == tokenTypeBot || req.Type == tokenTypeOIDC {
		return s.createBotToken(ctx, c, req)
	}
	if !joinTokenType(req.Type) {
		return nil, badRequest("unknown token type %q (supported: %s)", req.Type, strings.Join(joinTokenTypes, ", "))
	}
	if req.TTL <= 0 {
		req.TTL = 30 * time.Minute
	}
	if req.TTL > maxTokenTTL {
		return nil, badRequest("token TTL %s is longer than the maximum %s", req.TTL, maxTokenTTL)
	}
	tok, err := identity.NewToken()
	if err != nil {
		return nil, err
	}
	exp := s.now().Add(req.TTL).UTC()
	h := identity.HashToken(tok)
	t := Token{Type: req.Type, Expires: exp, Reusable: req.Reusable, CreatedBy: c.Name(), Hint: tok[:6], Hash: h}
	if err := s.createJSON(ctx, prefixTokens+h, t, exp); err != nil {
		return nil, fmt.Errorf("store token: %w", err)
	}
	s.emit(ctx, audit.Event{Event: audit.TokenCreate, User: c.Name(), Success: true,
		Fields: map[string]any{"token_type": req.Type, "expires": exp, "reusable": req.Reusable, "hint": t.Hint}})
	return &TokenResult{Token: tok, Type: req.Type, Expires: exp}, nil
}

// ListTokens lists live tokens (hints only, never the secrets).
func (s *Server) ListTokens(ctx context.Context, c Caller) ([]Token, error) {
	if err := s.authorize(c, "ListTokens"); err != nil {
		return nil, err
	}
	return listJSON[Token](ctx, s.b, prefixTokens)
}

// DeleteToken revokes a token by its secret or hash prefix hint.
func (s *Server) DeleteToken(ctx context.Context, c Caller, tokenOrHint string) error {
	if err := s.authorize(c, "DeleteToken"); err != nil {
		return err
	}
	toks, err := listJSON[Token](ctx, s.b, prefixTokens)
	if err != nil {
		return err
	}
	h := identity.HashToken(tokenOrHint)
	for _, t := range toks {
		if t.Hash == h || (t.Type == tokenTypeOIDC && t.Hint == tokenOrHint) || (len(tokenOrHint) >= 6 && strings.HasPrefix(tokenOrHint, t.Hint) && len(tokenOrHint) == 6) {
			return s.b.Delete(ctx, prefixTokens+t.Hash)
		}
	}
	return fmt.Errorf("token %w", storage.ErrNotFound)
}

// useToken validates a join token and consumes it if single-use.
func (s *Server) useToken(ctx context.Context, tok, typ, remote string) error {
	if len(tok) == 0 || len(tok) > 256 {
		return fmt.Errorf("%w: invalid join token", ErrUnauthenticated)
	}
	key := prefixTokens + identity.HashToken(tok)
	var t Token
	err := s.getJSON(ctx, key, &t)
	reason := ""
	switch {
	case errors.Is(err, storage.ErrNotFound):
		reason = "the join token is unknown, expired or already used"
	case err != nil:
		return err
	case !s.now().Before(t.Expires):
		reason = "the join token expired"
	case t.Type != typ:
		reason = fmt.Sprintf("the join token is for %s, not %s", t.Type, typ)
	case !t.Reusable:
		// Single use: deleting is the atomic "claim"; a second joiner fails.
		if err := s.b.Delete(ctx, key); err != nil {
			reason = "the join token was already used"
		}
	}
	s.emit(ctx, audit.Event{Event: audit.TokenUse, RemoteAddr: remote, Success: reason == "", Error: reason,
		Fields: map[string]any{"token_type": typ}})
	if reason != "" {
		return fmt.Errorf("%w: %s; create a new one with: warden tokens add --type %s", ErrUnauthenticated, reason, typ)
	}
	return nil
}

// NodeRegistration is the permanent record of a joined node.
type NodeRegistration struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Hostname string    `json:"hostname"`
	JoinedAt time.Time `json:"joined_at"`
	// Kind is empty for a node, "kube" for a kube agent, "proxy" for a
	// proxy running apart from auth.
	Kind string `json:"kind,omitempty"`
	// Principals are a proxy's names and addresses (proxies.go).
	Principals []string `json:"principals,omitempty"`
}

// Node is wire.Node: the API carries it.
type Node = wire.Node

// JoinRequest is wire.JoinRequest: the API carries it.
type JoinRequest = wire.JoinRequest

// JoinResponse is wire.JoinResponse: the API carries it.
type JoinResponse = wire.JoinResponse

var nodeNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,252}$`)

func validateNodeName(kind, n string) error {
	if !nodeNameRe.MatchString(n) {
		return badRequest("invalid %s %q: use letters, digits, '.', '_' or '-'", kind, n)
	}
	return nil
}

func newNodeID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// checkJoin validates a join request's name (called nameField in errors),
// hostname and public key, and returns the key.
func checkJoin(nameField string, req JoinRequest) (ssh.PublicKey, error) {
	if err := validateNodeName(nameField, req.Name); err != nil {
		return nil, err
	}
	if err := validateNodeName("hostname", req.Hostname); err != nil {
		return nil, err
	}
	pub, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	return pub, nil
}

// JoinNode registers a new node with a join token and issues its host
// certificate and API identity.
func (s *Server) JoinNode(ctx context.Context, req JoinRequest) (*JoinResponse, error) {
	pub, err := checkJoin("node name", req)
	if err != nil {
		return nil, err
	}
	kind, err := joinKind(req.Kind)
	if err != nil {
		return nil, err
	}
	if err := s.useToken(ctx, req.Token, kind, req.RemoteAddr); err != nil {
		return nil, err
	}
	id, err := newNodeID()
	if err != nil {
		return nil, err
	}
	reg := NodeRegistration{ID: id, Name: req.Name, Hostname: req.Hostname, JoinedAt: s.now().UTC(), Kind: registrationKind(kind)}
	if err := s.createJSON(ctx, prefixNodeReg+id, reg, time.Time{}); err != nil {
		return nil, fmt.Errorf("register node: %w", err)
	}
	certs, err := s.issueNodeCerts(ctx, reg, pub)
	if err != nil {
		return nil, err
	}
	s.emit(ctx, audit.Event{Event: audit.NodeJoin, Node: req.Name, RemoteAddr: req.RemoteAddr, Success: true,
		Fields: map[string]any{"node_id": id, "hostname": req.Hostname}})
	return &JoinResponse{Certs: *certs, NodeID: id}, nil
}

// RenewNodeCerts re-issues a joined node's certificates (called by the node
// with its current identity, before expiry).
func (s *Server) RenewNodeCerts(ctx context.Context, c Caller, publicKey string) (*Certs, error) {
	if err := s.authorize(c, "RenewNodeCerts"); err != nil {
		return nil, err
	}
	pub, err := parsePublicKey(publicKey)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	reg, err := s.GetNodeRegistration(ctx, c.NodeID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("%w: node %s is no longer registered", ErrUnauthenticated, c.NodeID)
		}
		return nil, err
	}
	return s.issueNodeCerts(ctx, *reg, pub)
}

func (s *Server) issueNodeCerts(ctx context.Context, reg NodeRegistration, sshPub ssh.PublicKey) (*Certs, error) {
	principals := uniq([]string{reg.ID, reg.Name, reg.Hostname})
	cert, err := s.ca.IssueHost(ca.HostCertRequest{PublicKey: sshPub, HostID: reg.ID, Principals: principals, TTL: s.cfg.NodeCertTTL})
	if err != nil {
		return nil, fmt.Errorf("issue host certificate: %w", err)
	}
	cryptoPub := cryptoPublicKey(sshPub)
	der, err := s.ca.IssueTLSClient(cryptoPub, ca.TLSIdentity{Kind: KindNode, NodeID: reg.ID}, s.cfg.NodeCertTTL)
	if err != nil {
		return nil, fmt.Errorf("issue node tls certificate: %w", err)
	}
	expires := time.Unix(int64(cert.ValidBefore), 0).UTC()
	s.emit(ctx, audit.Event{Event: audit.CertIssued, Node: reg.Name, Success: true,
		Fields: map[string]any{"cert_type": "host", "node_id": reg.ID, "principals": principals, "expires": expires}})
	c := s.certs(cert, der, expires)
	return &c, nil
}

// Inventory is the live set of connected nodes (the proxies' tunnel
// registries). A node is listed exactly while its tunnel is up.
type Inventory interface {
	Nodes() []Node
}

// SetInventory connects the node inventory (the proxy's registry).
func (s *Server) SetInventory(inv Inventory) { s.inventory.Store(&inv) }

func (s *Server) liveNodes() []Node {
	p := s.inventory.Load()
	if p == nil {
		return nil
	}
	return (*p).Nodes()
}

// GetNodeRegistration returns a joined node's registration.
// Registrations never change once written (a node that joins again gets a
// new id), so they are cached after the first read; whatever comes to
// delete one must also drop it from s.nodeRegs.
func (s *Server) GetNodeRegistration(ctx context.Context, id string) (*NodeRegistration, error) {
	if reg, ok := s.nodeRegs.Load(id); ok {
		r := reg.(NodeRegistration)
		return &r, nil
	}
	var reg NodeRegistration
	if err := s.getJSON(ctx, prefixNodeReg+id, &reg); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("node %s is not registered: %w", id, storage.ErrNotFound)
		}
		return nil, err
	}
	s.nodeRegs.Store(id, reg)
	return &reg, nil
}

// IssueProxyHostCert issues the host certificate of an in-process proxy.
func (s *Server) IssueProxyHostCert(pub ssh.PublicKey, principals []string, ttl time.Duration) (*ssh.Certificate, error) {
	return s.ca.IssueHost(ca.HostCertRequest{PublicKey: pub, HostID: "proxy", Principals: uniq(principals), TTL: ttl})
}

// ListNodes lists live nodes the caller may access, optionally filtered by
// labels (all must match exactly).
func (s *Server) ListNodes(ctx context.Context, c Caller, filter map[string]string) ([]Node, error) {
	all, err := s.authorizeShare(c, "ListNodes")
	if err != nil {
		return nil, err
	}
	nodes := append(s.liveNodes(), s.agentlessNodes(ctx)...)
	var roles []*policy.Role
	if !all {
		roles = s.roles.get(c.Roles)
	}
	out := make([]Node, 0, len(nodes))
	for _, n := range nodes {
		if !labelsMatch(n.Labels, filter) {
			continue
		}
		if !all && !policy.NodeAllowed(roles, c.Traits, policy.Target{NodeName: n.Name, NodeID: n.ID, Labels: n.Labels}) {
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func labelsMatch(labels, filter map[string]string) bool {
	for k, v := range filter {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// SearchAudit queries the audit log.
func (s *Server) SearchAudit(ctx context.Context, c Caller, q audit.Query) ([]audit.Event, error) {
	if err := s.authorize(c, "SearchAudit"); err != nil {
		return nil, err
	}
	return s.cfg.Audit.Search(ctx, q)
}

// WatchSnapshot is the state a node or proxy starts from.
type WatchSnapshot struct {
	Roles []*policy.Role `json:"roles"`
	Locks []*lock.Lock   `json:"locks"`
	// RequireSessionMFA is the cluster's auth.require_session_mfa.
	RequireSessionMFA bool `json:"require_session_mfa,omitempty"`
}

// Watch streams role and lock changes to nodes and proxies: the current
// set first, then every change until ctx ends (the channel then closes, and
// the watcher re-syncs).
func (s *Server) Watch(ctx context.Context, c Caller) (_ *WatchSnapshot, _ <-chan storage.Event, err error) {
	if err := s.authorize(c, "Watch"); err != nil {
		return nil, nil, err
	}
	// Watch first, then list: no change falls between the two (one may be
	// in both, which applying twice does not change). One watch for both
	// kinds keeps their changes in commit order.
	wctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel() // else the watch ends with ctx
		}
	}()
	ch, err := s.b.Watch(wctx, prefixRoles, prefixLocks)
	if err != nil {
		return nil, nil, err
	}
	roles, err := listJSON[*policy.Role](ctx, s.b, prefixRoles)
	if err != nil {
		return nil, nil, err
	}
	locks, err := listJSON[*lock.Lock](ctx, s.b, prefixLocks)
	if err != nil {
		return nil, nil, err
	}
	return &WatchSnapshot{Roles: roles, Locks: locks, RequireSessionMFA: s.cfg.RequireSessionMFA}, ch, nil
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
