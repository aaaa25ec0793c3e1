package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/recording"
)

// Agentless servers through a proxy running apart from auth
// (auth/proxyagentless.go): the calls its proxy identity may make.

// ProxyAgentlessRequest asks auth about one login of a user, whose
// certificate the calling proxy verified, on an agentless server.
type ProxyAgentlessRequest struct {
	User   auth.Caller `json:"user"`
	Node   auth.Node   `json:"node"`
	Login  string      `json:"login"`
	Remote string      `json:"remote"`
	// PublicKey (authorized_keys format) and Source are for a session
	// certificate only.
	PublicKey string `json:"public_key,omitempty"`
	Source    string `json:"source,omitempty"`
}

// ProxyAgentlessHostCertRequest asks for the host certificate a proxy
// presents in an agentless server's name.
type ProxyAgentlessHostCertRequest struct {
	Name      string `json:"name"`
	ID        string `json:"id"`
	PublicKey string `json:"public_key"`
}

// SSHCertBody is an SSH certificate in authorized_keys format.
type SSHCertBody struct {
	Cert string `json:"cert"`
}

func parsePublicKey(s string) (ssh.PublicKey, error) {
	if s == "" {
		return nil, nil
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", auth.ErrBadRequest, err)
	}
	return k, nil
}

func certBody(cert *ssh.Certificate, err error) (SSHCertBody, error) {
	if err != nil {
		return SSHCertBody{}, err
	}
	return SSHCertBody{Cert: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))}, nil
}

func (h *Handler) proxyAgentlessRoutes() {
	m, a := h.mux, h.auth
	m.HandleFunc("GET /v1/proxies/agentless", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]auth.Node, error) {
		return list(a.ProxyListAgentless(r.Context(), c))
	})))
	m.HandleFunc("POST /v1/proxies/agentless/authorize", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in ProxyAgentlessRequest) (*auth.AgentlessDecision, error) {
		return a.ProxyAuthorizeAgentless(r.Context(), c, in.User, in.Node, in.Login, in.Remote)
	})))
	m.HandleFunc("POST /v1/proxies/agentless/cert", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in ProxyAgentlessRequest) (SSHCertBody, error) {
		pub, err := parsePublicKey(in.PublicKey)
		if err != nil {
			return SSHCertBody{}, err
		}
		return certBody(a.ProxyIssueAgentlessCert(r.Context(), c, in.User, in.Node, in.Login, in.Remote, pub, in.Source))
	})))
	m.HandleFunc("POST /v1/proxies/agentless/hostcert", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in ProxyAgentlessHostCertRequest) (SSHCertBody, error) {
		pub, err := parsePublicKey(in.PublicKey)
		if err != nil {
			return SSHCertBody{}, err
		}
		return certBody(a.ProxyAgentlessHostCert(r.Context(), c, in.Name, in.ID, pub))
	})))
	// The server's own channels, the proxy speaking for it: the same
	// handlers as a node's, with the server's identity once auth found it
	// registered.
	as := func(next callerHandler) http.HandlerFunc {
		return h.authed(func(w http.ResponseWriter, r *http.Request, c auth.Caller) {
			nc, err := a.ProxyAgentlessCaller(r.Context(), c, r.PathValue("node"))
			if err != nil {
				h.fail(w, err)
				return
			}
			next(w, r, nc)
		})
	}
	m.HandleFunc("POST /v1/proxies/agentless/{node}/events", as(withBody(h, func(r *http.Request, c auth.Caller, in []audit.Event) (empty, error) {
		return done(a.EmitEvents(r.Context(), c, in))
	})))
	m.HandleFunc("PUT /v1/proxies/agentless/{node}/recordings/{id}", as(h.recordingAppend))
	m.HandleFunc("POST /v1/proxies/agentless/{node}/recordings/{id}/complete", as(withBody(h, func(r *http.Request, c auth.Caller, in CompleteBody) (empty, error) {
		return done(a.CompleteRecording(r.Context(), c, r.PathValue("id"), in.Length, in.SHA256, in.Interrupted))
	})))
}

// ProxyListAgentless lists the agentless servers, for a proxy.
func (c *Client) ProxyListAgentless(ctx context.Context) ([]auth.Node, error) {
	var out []auth.Node
	return out, c.do(ctx, http.MethodGet, "/v1/proxies/agentless", nil, &out)
}

// ProxyAuthorizeAgentless decides a user's login on an agentless server,
// for a proxy.
func (c *Client) ProxyAuthorizeAgentless(ctx context.Context, req ProxyAgentlessRequest) (*auth.AgentlessDecision, error) {
	var out auth.AgentlessDecision
	return &out, c.do(ctx, http.MethodPost, "/v1/proxies/agentless/authorize", req, &out)
}

// ProxyIssueAgentlessCert decides a login again and issues its one-minute
// certificate for sshd, for a proxy.
func (c *Client) ProxyIssueAgentlessCert(ctx context.Context, req ProxyAgentlessRequest, pub ssh.PublicKey) (*ssh.Certificate, error) {
	req.PublicKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	var out SSHCertBody
	if err := c.do(ctx, http.MethodPost, "/v1/proxies/agentless/cert", req, &out); err != nil {
		return nil, err
	}
	return parseCert(out.Cert)
}

// ProxyAgentlessHostCert issues the host certificate a proxy presents in
// an agentless server's name.
func (c *Client) ProxyAgentlessHostCert(ctx context.Context, name, id string, pub ssh.PublicKey) (*ssh.Certificate, error) {
	var out SSHCertBody
	req := ProxyAgentlessHostCertRequest{Name: name, ID: id, PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))}
	if err := c.do(ctx, http.MethodPost, "/v1/proxies/agentless/hostcert", req, &out); err != nil {
		return nil, err
	}
	return parseCert(out.Cert)
}

// AgentlessEmitEvents sends an agentless server's session events, for the
// proxy that fronts it.
func (c *Client) AgentlessEmitEvents(ctx context.Context, nodeID string, evs []audit.Event) error {
	return c.do(ctx, http.MethodPost, "/v1/proxies/agentless/"+url.PathEscape(nodeID)+"/events", evs, nil)
}

// AgentlessAppendRecording is AppendRecording for an agentless server's
// session, for the proxy that fronts it.
func (c *Client) AgentlessAppendRecording(ctx context.Context, nodeID string, meta recording.Meta, offset int64, data []byte) (int64, error) {
	return c.appendRecordingAt(ctx, "/v1/proxies/agentless/"+url.PathEscape(nodeID)+"/recordings/", meta, offset, data)
}

// AgentlessCompleteRecording is CompleteRecording for an agentless
// server's session, for the proxy that fronts it.
func (c *Client) AgentlessCompleteRecording(ctx context.Context, nodeID, id string, length int64, sha string, interrupted bool) error {
	return c.do(ctx, http.MethodPost, "/v1/proxies/agentless/"+url.PathEscape(nodeID)+"/recordings/"+url.PathEscape(id)+"/complete",
		CompleteBody{Length: length, SHA256: sha, Interrupted: interrupted}, nil)
}

func parseCert(s string) (*ssh.Certificate, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("certificate from auth: %v", err)
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("auth answered a key, not a certificate")
	}
	return cert, nil
}
