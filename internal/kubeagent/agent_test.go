package kubeagent

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// The agent sends on only the impersonation the proxy decided: a client's
// Impersonate-* and Authorization headers never reach the API server, and
// a request without the proxy's decision does not pass at all.
func TestServeImpersonatesOnlyTheDecision(t *testing.T) {
	var got http.Header
	upstreamSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusOK)
	}))
	defer upstreamSrv.Close()
	u, _ := url.Parse(upstreamSrv.URL)
	a := &Agent{clusters: map[string]*upstream{"k1": {server: u, transport: newTransport(nil),
		token: func() (string, error) { return "agent-token", nil }}}}

	send := func(h map[string][]string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/api/v1/namespaces/default/pods", nil)
		for k, v := range h {
			req.Header[k] = v
		}
		w := httptest.NewRecorder()
		got = nil
		a.serve(w, req)
		return w
	}
	id, _ := json.Marshal(identity{Cluster: "k1", User: "alice", Groups: []string{"dev"}})
	w := send(map[string][]string{
		IdentityHeader:             {string(id)},
		"Impersonate-User":         {"admin"},
		"Impersonate-Group":        {"system:masters"},
		"Impersonate-Uid":          {"0"},
		"Impersonate-Extra-Scopes": {"all"},
		"Authorization":            {"Bearer client-token"},
	})
	if w.Code != http.StatusOK || got == nil {
		t.Fatalf("status %d, upstream saw %v", w.Code, got)
	}
	if got.Get("Impersonate-User") != "alice" || !slices.Equal(got.Values("Impersonate-Group"), []string{"dev"}) {
		t.Fatalf("impersonation sent: %v", got)
	}
	for k := range got {
		if (strings.HasPrefix(k, "Impersonate-") && k != "Impersonate-User" && k != "Impersonate-Group") || k == IdentityHeader {
			t.Fatalf("header %s passed: %v", k, got)
		}
	}
	if got.Get("Authorization") != "Bearer agent-token" {
		t.Fatalf("authorization sent: %q", got.Get("Authorization"))
	}
	// No decision, a malformed one, or one for a cluster it does not serve.
	for _, h := range []map[string][]string{
		{"Impersonate-User": {"admin"}},
		{IdentityHeader: {"{"}},
		{IdentityHeader: {`{"cluster":"k1"}`}},
		{IdentityHeader: {`{"cluster":"k2","user":"alice"}`}},
	} {
		if w := send(h); w.Code < 400 || got != nil {
			body, _ := io.ReadAll(w.Body)
			t.Fatalf("%v: status %d %s, upstream saw %v", h, w.Code, body, got)
		}
	}
}

// The decisions the agent remembers answer as a fresh decode does; a
// caller's change to one does not reach the next request; what is not a
// decision never passes, remembered or not.
func TestIdentitiesCache(t *testing.T) {
	var c identities
	raw, _ := json.Marshal(identity{Cluster: "k1", User: "alice", Groups: []string{"dev", "ops"}})
	for i := range 3 {
		id, ok := c.parse(string(raw))
		if !ok || id.Cluster != "k1" || id.User != "alice" || !slices.Equal(id.Groups, []string{"dev", "ops"}) {
			t.Fatalf("decode %d: %+v %v", i, id, ok)
		}
		id.Groups[0] = "system:masters"
	}
	for _, bad := range []string{"", "{", `{"cluster":"k1"}`, `{"cluster":"k1","user":""}`, `"alice"`, `{"user":"a","groups":` + strings.Repeat(`"g",`, 5000) + `"g"]}`} {
		for range 2 {
			if id, ok := c.parse(bad); ok {
				t.Fatalf("%.40q passed: %+v", bad, id)
			}
		}
	}
}
