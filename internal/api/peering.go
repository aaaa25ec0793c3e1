package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/storage"
)

// Proxy peering of a proxy running apart (auth/peering.go): its peering
// keys are written, listed and watched through auth, and its peering
// certificate issued there.

// PeerItem is a peering key on the wire.
type PeerItem struct {
	Key      string    `json:"key"`
	Value    []byte    `json:"value,omitempty"`
	Revision int64     `json:"revision,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
}

// PeerWatchEvent is one line of the peering watch stream.
type PeerWatchEvent struct {
	Type string    `json:"type"` // ready | put | delete | keepalive
	Item *PeerItem `json:"item,omitempty"`
}

// PeerCertRequest asks for a peering certificate for a key.
type PeerCertRequest struct {
	PublicKey string `json:"public_key"`
}

// PeerCertResponse is the issued peering certificate (DER).
type PeerCertResponse struct {
	Cert []byte `json:"cert"`
}

type peerRevision struct {
	Revision int64 `json:"revision"`
}

func peerItemOf(it storage.Item) *PeerItem {
	return &PeerItem{Key: it.Key, Value: it.Value, Revision: it.Revision, Expires: it.Expires}
}

func (p *PeerItem) item() storage.Item {
	return storage.Item{Key: p.Key, Value: p.Value, Revision: p.Revision, Expires: p.Expires}
}

func (h *Handler) peeringRoutes() {
	m, a := h.mux, h.auth
	m.HandleFunc("PUT /v1/proxies/peering/keys", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in PeerItem) (peerRevision, error) {
		rev, err := a.ProxyPeerPut(r.Context(), c, in.item())
		return peerRevision{rev}, err
	})))
	m.HandleFunc("DELETE /v1/proxies/peering/keys", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		return done(a.ProxyPeerDelete(r.Context(), c, r.URL.Query().Get("key")))
	})))
	m.HandleFunc("GET /v1/proxies/peering/keys", h.authed(noBody(h, func(r *http.Request, c auth.Caller) ([]*PeerItem, error) {
		items, err := a.ProxyPeerList(r.Context(), c)
		out := make([]*PeerItem, 0, len(items))
		for _, it := range items {
			out = append(out, peerItemOf(it))
		}
		return out, err
	})))
	m.HandleFunc("POST /v1/proxies/peering/cert", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in PeerCertRequest) (PeerCertResponse, error) {
		der, err := a.IssueProxyPeerCert(r.Context(), c, in.PublicKey)
		return PeerCertResponse{Cert: der}, err
	})))
	m.HandleFunc("GET /v1/proxies/peering/watch", h.authed(h.peerWatch))
}

// peerWatch streams the peering keys' changes; the first line ("ready")
// says the watch is in place, so that a list made after it misses
// nothing.
func (h *Handler) peerWatch(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ch, err := h.auth.ProxyPeerWatch(ctx, c)
	if err != nil {
		h.fail(w, err)
		return
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	send := func(ev PeerWatchEvent) bool {
		line, err := json.Marshal(ev)
		if err != nil {
			return false
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	if !send(PeerWatchEvent{Type: "ready"}) {
		return
	}
	tick := time.NewTicker(WatchKeepalive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !send(PeerWatchEvent{Type: "keepalive"}) {
				return
			}
		case ev, ok := <-ch:
			if !ok {
				return // the client lists again
			}
			typ := "put"
			if ev.Type == storage.EventDelete {
				typ = "delete"
			}
			if !send(PeerWatchEvent{Type: typ, Item: peerItemOf(ev.Item)}) {
				return
			}
		}
	}
}

// PeerPut writes one of the calling proxy's peering keys.
func (c *Client) PeerPut(ctx context.Context, it storage.Item) (storage.Item, error) {
	var out peerRevision
	err := c.do(ctx, http.MethodPut, "/v1/proxies/peering/keys", peerItemOf(it), &out)
	it.Revision = out.Revision
	return it, err
}

// PeerDelete deletes a peering key (one of the calling proxy's, or the
// tunnel key of a proxy that is gone).
func (c *Client) PeerDelete(ctx context.Context, key string) error {
	return c.do(ctx, http.MethodDelete, "/v1/proxies/peering/keys?"+url.Values{"key": {key}}.Encode(), nil, nil)
}

// PeerList lists the peering keys.
func (c *Client) PeerList(ctx context.Context) ([]storage.Item, error) {
	var in []*PeerItem
	if err := c.do(ctx, http.MethodGet, "/v1/proxies/peering/keys", nil, &in); err != nil {
		return nil, err
	}
	out := make([]storage.Item, 0, len(in))
	for _, p := range in {
		if p != nil {
			out = append(out, p.item())
		}
	}
	return out, nil
}

// PeerCert asks for a peering certificate for a key (an SSH authorized
// key line); it returns the certificate's DER.
func (c *Client) PeerCert(ctx context.Context, publicKey string) ([]byte, error) {
	var out PeerCertResponse
	return out.Cert, c.do(ctx, http.MethodPost, "/v1/proxies/peering/cert", PeerCertRequest{PublicKey: publicKey}, &out)
}

// PeerWatch follows the peering keys: it returns once the watch is in
// place (list after it), and the channel carries the changes until ctx
// ends or the stream breaks (a stream silent for three keepalives is
// taken as broken).
func (c *Client) PeerWatch(ctx context.Context) (<-chan storage.Event, error) {
	ctx, cancel := context.WithCancel(ctx)
	body, err := c.openStreamWith(ctx, c.watch, "/v1/proxies/peering/watch")
	if err != nil {
		cancel()
		return nil, err
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	idle := time.AfterFunc(3*WatchKeepalive, cancel)
	next := func() (PeerWatchEvent, error) {
		var ev PeerWatchEvent
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return ev, err
			}
			return ev, io.ErrUnexpectedEOF
		}
		idle.Reset(3 * WatchKeepalive)
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return ev, fmt.Errorf("peering watch: %w", err)
		}
		return ev, nil
	}
	if ev, err := next(); err != nil || ev.Type != "ready" {
		idle.Stop()
		cancel()
		body.Close()
		if err == nil {
			err = fmt.Errorf("peering watch: first line %q, not ready", ev.Type)
		}
		return nil, err
	}
	ch := make(chan storage.Event, 64)
	go func() {
		defer close(ch)
		defer cancel()
		defer idle.Stop()
		defer body.Close()
		for {
			ev, err := next()
			if err != nil {
				return
			}
			var out storage.Event
			switch ev.Type {
			case "keepalive":
				continue
			case "put":
				out.Type = storage.EventPut
			case "delete":
				out.Type = storage.EventDelete
			default:
				return
			}
			if ev.Item == nil {
				return
			}
			out.Item = ev.Item.item()
			select {
			case ch <- out:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}
