package api

import (
	"context"
	"net/http"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

// sessionMFARoutes are per-session MFA: whether a session needs a check,
// and the certificate a check yields (docs/session-mfa.md).
func (h *Handler) sessionMFARoutes() {
	m, a := h.mux, h.auth
	m.HandleFunc("POST /v1/session-mfa/status", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.SessionMFAQuery) (*wire.SessionMFAStatus, error) {
		return a.SessionMFAStatus(r.Context(), c, in)
	})))
	// Cluster settings kept in storage (auth/settings.go).
	m.HandleFunc("GET /v1/cluster/settings", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*wire.ClusterSettingsView, error) {
		return a.ClusterSettings(r.Context(), c)
	})))
	m.HandleFunc("PATCH /v1/cluster/settings", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.ClusterSettings) (*wire.ClusterSettingsView, error) {
		return a.UpdateClusterSettings(r.Context(), c, in)
	})))
	m.HandleFunc("POST /v1/session-mfa/certs", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.SessionCertRequest) (*wire.SessionCert, error) {
		return a.IssueSessionCert(r.Context(), c, in)
	})))
}

// SessionMFAStatus asks whether sessions to the nodes need a per-session
// MFA check.
func (c *Client) SessionMFAStatus(ctx context.Context, q wire.SessionMFAQuery) (*wire.SessionMFAStatus, error) {
	var out wire.SessionMFAStatus
	return &out, c.do(ctx, http.MethodPost, "/v1/session-mfa/status", q, &out)
}

// IssueSessionCert makes the fresh MFA check and returns the per-session
// certificate.
func (c *Client) IssueSessionCert(ctx context.Context, req wire.SessionCertRequest) (*wire.SessionCert, error) {
	var out wire.SessionCert
	return &out, c.do(ctx, http.MethodPost, "/v1/session-mfa/certs", req, &out)
}

// ClusterSettings reads the cluster settings kept in storage.
func (c *Client) ClusterSettings(ctx context.Context) (*wire.ClusterSettingsView, error) {
	var out wire.ClusterSettingsView
	return &out, c.do(ctx, http.MethodGet, "/v1/cluster/settings", nil, &out)
}

// UpdateClusterSettings changes the cluster settings set in in.
func (c *Client) UpdateClusterSettings(ctx context.Context, in wire.ClusterSettings) (*wire.ClusterSettingsView, error) {
	var out wire.ClusterSettingsView
	return &out, c.do(ctx, http.MethodPatch, "/v1/cluster/settings", in, &out)
}
