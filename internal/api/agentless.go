package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

// maxKRLWait bounds the long poll of GET /v1/krl.
const maxKRLWait = 60 * time.Second

// KRL headers: the digest of what a KRL revokes, and its counts.
const (
	HeaderKRLDigest  = "X-Warden-KRL-SHA256"
	HeaderKRLSerials = "X-Warden-KRL-Serials"
	HeaderKRLKeyIDs  = "X-Warden-KRL-Key-IDs"
)

// agentlessRoutes are the routes of agentless servers (docs/agentless.md).
func (h *Handler) agentlessRoutes() {
	m, a := h.mux, h.auth
	m.HandleFunc("POST /v1/ca/sign/host", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.SignHostRequest) (*wire.SignHostResponse, error) {
		return a.SignHostCert(r.Context(), c, in)
	})))
	m.HandleFunc("PUT /v1/agentless/{name}", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in auth.AgentlessNode) (empty, error) {
		if in.Metadata.Name != r.PathValue("name") {
			return empty{}, fmt.Errorf("%w: server name in path and body differ", auth.ErrBadRequest)
		}
		return done(a.UpsertAgentlessNode(r.Context(), c, &in))
	})))
	m.HandleFunc("GET /v1/agentless", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]auth.AgentlessNode, error) {
		return list(a.ListAgentlessNodes(r.Context(), c))
	})))
	m.HandleFunc("DELETE /v1/agentless/{name}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		return done(a.DeleteAgentlessNode(r.Context(), c, r.PathValue("name")))
	})))
	m.HandleFunc("GET /v1/krl", h.authed(h.krl))
}

// krl serves the KRL in OpenSSH's binary format; with ?since=DIGEST&wait=30s
// it answers once the KRL differs from that one, or after the wait.
func (h *Handler) krl(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	q := r.URL.Query()
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxKRLWait {
			h.fail(w, fmt.Errorf("%w: wait must be a duration up to %s", auth.ErrBadRequest, maxKRLWait))
			return
		}
		wait = d
	}
	since := q.Get("since")
	if len(since) > 64 {
		h.fail(w, fmt.Errorf("%w: since is a SHA-256 digest", auth.ErrBadRequest))
		return
	}
	res, err := h.auth.KRL(r.Context(), c, since, wait)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(HeaderKRLDigest, res.SHA256)
	w.Header().Set(HeaderKRLSerials, strconv.Itoa(res.Serials))
	w.Header().Set(HeaderKRLKeyIDs, strconv.Itoa(res.KeyIDs))
	_, _ = w.Write(res.Data)
}

// SignHostCert issues a host certificate for a server's sshd host key.
func (c *Client) SignHostCert(ctx context.Context, req wire.SignHostRequest) (*wire.SignHostResponse, error) {
	var out wire.SignHostResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/ca/sign/host", req, &out)
}

// UpsertAgentlessNode registers or updates an agentless server.
func (c *Client) UpsertAgentlessNode(ctx context.Context, n *wire.AgentlessNode) error {
	return c.do(ctx, http.MethodPut, "/v1/agentless/"+url.PathEscape(n.Metadata.Name), n, nil)
}

// ListAgentlessNodes lists agentless servers with their status.
func (c *Client) ListAgentlessNodes(ctx context.Context) ([]wire.AgentlessNode, error) {
	var out []wire.AgentlessNode
	return out, c.do(ctx, http.MethodGet, "/v1/agentless", nil, &out)
}

// DeleteAgentlessNode removes an agentless server.
func (c *Client) DeleteAgentlessNode(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/agentless/"+url.PathEscape(name), nil, nil)
}

// KRL is a fetched KRL.
type KRL struct {
	Data            []byte
	SHA256          string
	Serials, KeyIDs int
}

// maxKRLSize bounds a KRL the client reads.
const maxKRLSize = 64 << 20

// FetchKRL gets the KRL; with since (a digest) and wait it long-polls for
// a different one.
func (c *Client) FetchKRL(ctx context.Context, since string, wait time.Duration) (*KRL, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
		q.Set("wait", wait.String())
	}
	path := "/v1/krl"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Warden proxy at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readResponse(resp, nil)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxKRLSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKRLSize {
		return nil, fmt.Errorf("KRL larger than %d bytes", maxKRLSize)
	}
	k := &KRL{Data: data, SHA256: resp.Header.Get(HeaderKRLDigest)}
	k.Serials, _ = strconv.Atoi(resp.Header.Get(HeaderKRLSerials))
	k.KeyIDs, _ = strconv.Atoi(resp.Header.Get(HeaderKRLKeyIDs))
	return k, nil
}
