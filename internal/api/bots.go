package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

// botRoutes are the bots' endpoints (docs/bots.md).
func (h *Handler) botRoutes() {
	m, a := h.mux, h.auth
	m.HandleFunc("POST /v1/bots", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.CreateBotRequest) (*wire.CreateBotResult, error) {
		return a.CreateBot(r.Context(), c, in)
	})))
	m.HandleFunc("GET /v1/bots", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]wire.BotInfo, error) {
		return list(a.ListBots(r.Context(), c))
	})))
	m.HandleFunc("DELETE /v1/bots/{name}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		return done(a.DeleteBot(r.Context(), c, r.PathValue("name")))
	})))
	m.HandleFunc("POST /v1/bots/join", open(h, func(r *http.Request, in wire.BotJoinRequest) (*wire.BotCerts, error) {
		in.RemoteAddr = remoteIP(r)
		return a.JoinBot(r.Context(), in)
	}))
	m.HandleFunc("POST /v1/bots/renew", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.BotCertsRequest) (*wire.BotCerts, error) {
		in.RemoteAddr = remoteIP(r)
		return a.RenewBotCerts(r.Context(), c, in)
	})))
	m.HandleFunc("POST /v1/bots/certs", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.BotCertsRequest) (*wire.BotCerts, error) {
		in.RemoteAddr = remoteIP(r)
		return a.BotOutputCerts(r.Context(), c, in)
	})))
}

// CreateBot adds a bot (admin).
func (c *Client) CreateBot(ctx context.Context, req wire.CreateBotRequest) (*wire.CreateBotResult, error) {
	var out wire.CreateBotResult
	return &out, c.do(ctx, http.MethodPost, "/v1/bots", req, &out)
}

// ListBots lists bots (admin).
func (c *Client) ListBots(ctx context.Context) ([]wire.BotInfo, error) {
	var out []wire.BotInfo
	return out, c.do(ctx, http.MethodGet, "/v1/bots", nil, &out)
}

// DeleteBot removes a bot (admin).
func (c *Client) DeleteBot(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/bots/"+url.PathEscape(name), nil, nil)
}

// JoinBot joins a bot with a join token (no client certificate).
func (c *Client) JoinBot(ctx context.Context, req wire.BotJoinRequest) (*wire.BotCerts, error) {
	var out wire.BotCerts
	return &out, c.do(ctx, http.MethodPost, "/v1/bots/join", req, &out)
}

// RenewBotCerts renews the bot identity the client presents.
func (c *Client) RenewBotCerts(ctx context.Context, publicKey string) (*wire.BotCerts, error) {
	var out wire.BotCerts
	return &out, c.do(ctx, http.MethodPost, "/v1/bots/renew", wire.BotCertsRequest{PublicKey: publicKey}, &out)
}

// BotOutputCerts gets certificates for one of the bot's outputs (roles:
// some of the bot's; none for all).
func (c *Client) BotOutputCerts(ctx context.Context, publicKey string, roles []string) (*wire.BotCerts, error) {
	var out wire.BotCerts
	return &out, c.do(ctx, http.MethodPost, "/v1/bots/certs", wire.BotCertsRequest{PublicKey: publicKey, Roles: roles}, &out)
}
