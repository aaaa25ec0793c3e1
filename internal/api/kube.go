package api

import (
	"context"
	"net/http"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

// kubeRoutes are the Kubernetes routes of the API (the Kubernetes API
// itself is served by the proxy under /kube/).
func (h *Handler) kubeRoutes() {
	m, a := h.mux, h.auth
	m.HandleFunc("GET /v1/kube/clusters", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (wire.KubeClusterList, error) {
		cl, err := list(a.ListKubeClusters(r.Context(), c))
		return wire.KubeClusterList{Clusters: cl}, err
	})))
}

// ListKubeClusters lists the Kubernetes clusters the caller may reach.
func (c *Client) ListKubeClusters(ctx context.Context) ([]wire.KubeCluster, error) {
	var out wire.KubeClusterList
	return out.Clusters, c.do(ctx, http.MethodGet, "/v1/kube/clusters", nil, &out)
}
