package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/krl"
	"github.com/warden-sh/warden/internal/wire"
)

// exerciseAgentlessRoutes sends a request to each route of agentless.go
// (for TestEveryRouteReachesItsHandler).
func exerciseAgentlessRoutes(t *testing.T, e *env, admin *Client) {
	t.Helper()
	n := wire.AgentlessNode{Kind: wire.KindAgentlessNode, Spec: wire.AgentlessSpec{Addr: "127.0.0.1:1", Labels: map[string]string{"env": "prod"}}}
	n.Metadata.Name = "legacy1"
	e.call(admin, "PUT", "/v1/agentless/other", n, http.StatusBadRequest) // the name must match
	e.call(admin, "PUT", "/v1/agentless/legacy1", n, http.StatusOK)
	got := decodeAs[[]wire.AgentlessNode](t, e.call(admin, "GET", "/v1/agentless", nil, http.StatusOK))
	if len(got) != 1 || got[0].Spec.Addr != "127.0.0.1:1" || got[0].Status == nil || got[0].Status.Reachable {
		t.Errorf("agentless servers: %+v", got)
	}
	_, pub := newKey(t)
	signed := decodeAs[wire.SignHostResponse](t, e.call(admin, "POST", "/v1/ca/sign/host",
		wire.SignHostRequest{Name: "legacy1", Principals: []string{"legacy1.example.test"}, PublicKey: pub}, http.StatusOK))
	if !strings.Contains(signed.Cert, "-cert-v01@openssh.com ") || signed.TLSCert == "" || len(signed.Principals) != 2 {
		t.Errorf("signed host certificate: %+v", signed)
	}
	resp, data := e.send(admin, "GET", "/v1/krl", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderKRLDigest) == "" {
		t.Errorf("krl: %d %s", resp.StatusCode, data)
	} else if _, err := krl.Parse(data); err != nil {
		t.Errorf("krl: %v", err)
	}
	e.call(admin, "GET", "/v1/krl?wait=1h", nil, http.StatusBadRequest)
	e.call(admin, "DELETE", "/v1/agentless/legacy1", nil, http.StatusOK)
	e.call(admin, "DELETE", "/v1/agentless/legacy1", nil, http.StatusNotFound)
}
