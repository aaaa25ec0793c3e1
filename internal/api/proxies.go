package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/wire"
)

// ProxyCheckUserRequest asks auth about a user whose certificate the
// calling proxy verified.
type ProxyCheckUserRequest struct {
	User   auth.Caller `json:"user"`
	Via    string      `json:"via"`
	Remote string      `json:"remote"`
}

// ProxySpendRequest counts one use of a per-session certificate.
type ProxySpendRequest struct {
	Serial  uint64    `json:"serial"`
	Expires time.Time `json:"expires"`
	Max     int       `json:"max"`
}

// proxyRoutes are the calls of a proxy running apart from auth
// (auth/proxies.go); all but joining need its proxy identity.
func (h *Handler) proxyRoutes() {
	m, a := h.mux, h.auth
	m.HandleFunc("POST /v1/proxies/join", open(h, func(r *http.Request, in auth.JoinRequest) (*auth.ProxyJoinResponse, error) {
		in.RemoteAddr = remoteIP(r)
		return a.JoinProxy(r.Context(), in)
	}))
	m.HandleFunc("POST /v1/proxies/renew", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.ProxyRenewRequest) (*auth.ProxyCerts, error) {
		return a.RenewProxyCerts(r.Context(), c, in.PublicKey)
	})))
	m.HandleFunc("POST /v1/proxies/check-user", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in ProxyCheckUserRequest) (auth.Caller, error) {
		return a.ProxyCheckUser(r.Context(), c, in.User, in.Via, in.Remote)
	})))
	m.HandleFunc("GET /v1/proxies/noderegs/{id}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*auth.NodeRegistration, error) {
		return a.ProxyNodeRegistration(r.Context(), c, r.PathValue("id"))
	})))
	m.HandleFunc("POST /v1/proxies/spend-session-cert", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in ProxySpendRequest) (empty, error) {
		return done(a.ProxySpendSessionCert(r.Context(), c, in.Serial, in.Expires, in.Max))
	})))
	m.HandleFunc("PUT /v1/proxies/inventory", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in auth.ProxyInventory) (empty, error) {
		return done(a.PublishProxyInventory(r.Context(), c, in))
	})))
	m.HandleFunc("POST /v1/proxies/authorize-kube", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in ProxyKubeRequest) (policy.KubeDecision, error) {
		return a.ProxyAuthorizeKube(r.Context(), c, in.User, in.Cluster, in.Resource)
	})))
}

// JoinProxy joins a proxy with a proxy join token.
func (c *Client) JoinProxy(ctx context.Context, req wire.JoinRequest) (*wire.ProxyJoinResponse, error) {
	var out wire.ProxyJoinResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/join", req, &out)
}

// RenewProxyCerts renews the calling proxy's certificates for a key.
func (c *Client) RenewProxyCerts(ctx context.Context, publicKey string) (*wire.ProxyCerts, error) {
	var out wire.ProxyCerts
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/renew", wire.ProxyRenewRequest{PublicKey: publicKey}, &out)
}

// ProxyCheckUser is auth.Server.CurrentCaller for a user whose
// certificate the calling proxy verified.
func (c *Client) ProxyCheckUser(ctx context.Context, req ProxyCheckUserRequest) (auth.Caller, error) {
	var out auth.Caller
	return out, c.do(ctx, http.MethodPost, "/v1/proxies/check-user", req, &out)
}

// ProxyNodeRegistration returns a node's registration, for a proxy.
func (c *Client) ProxyNodeRegistration(ctx context.Context, id string) (*auth.NodeRegistration, error) {
	var out auth.NodeRegistration
	return &out, c.do(ctx, http.MethodGet, "/v1/proxies/noderegs/"+url.PathEscape(id), nil, &out)
}

// ProxySpendSessionCert counts one use of a per-session certificate.
func (c *Client) ProxySpendSessionCert(ctx context.Context, req ProxySpendRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/proxies/spend-session-cert", req, nil)
}

// PublishProxyInventory publishes the calling proxy's live nodes and
// Kubernetes clusters.
func (c *Client) PublishProxyInventory(ctx context.Context, inv wire.ProxyInventory) error {
	if inv.Nodes == nil {
		inv.Nodes = []wire.Node{}
	}
	return c.do(ctx, http.MethodPut, "/v1/proxies/inventory", inv, nil)
}

// ProxyKubeRequest asks auth to decide a Kubernetes API request of a user
// whose certificate the calling proxy verified.
type ProxyKubeRequest struct {
	User     auth.Caller         `json:"user"`
	Cluster  auth.KubeCluster    `json:"cluster"`
	Resource policy.KubeResource `json:"resource"`
}

// ProxyAuthorizeKube decides a user's Kubernetes API request, for a proxy.
func (c *Client) ProxyAuthorizeKube(ctx context.Context, req ProxyKubeRequest) (policy.KubeDecision, error) {
	var out policy.KubeDecision
	return out, c.do(ctx, http.MethodPost, "/v1/proxies/authorize-kube", req, &out)
}
