package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"github.com/warden-sh/warden/internal/wire"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
)

const testRoles = `
kind: role
metadata: {name: dev}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: dev}
    request:
      roles: [prod]
---
kind: role
metadata: {name: prod}
spec:
  allow:
    logins: [root]
    node_labels: {env: prod}
---
kind: role
metadata: {name: reviewer}
spec:
  allow:
    review_requests: {roles: [prod]}
`

// routePatterns are the patterns routes.go (and bots.go) register, read
// from their source.
func routePatterns(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, name := range []string{"routes.go", "bots.go", "agentless.go"} {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, handled(t, f)...)
	}
	if len(out) < 40 {
		t.Fatalf("found %d routes in routes.go: the parse is broken", len(out))
	}
	return out
}

// handled lists the patterns f passes to HandleFunc.
func handled(t *testing.T, f *ast.File) []string {
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "HandleFunc" {
			if lit, ok := call.Args[0].(*ast.BasicLit); ok {
				p, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, p)
			}
		}
		return true
	})
	return out
}

// signup signs a user up through the open routes (with a key, so that
// completing it also logs in) and returns a client with their certificate.
func (e *env) signup(admin *Client, name string, roles ...string) (*Client, signedUp) {
	e.t.Helper()
	inv := decodeAs[auth.InviteResult](e.t, e.call(admin, "POST", "/v1/users",
		auth.CreateUserRequest{Name: name, Roles: roles, Logins: []string{name}}, http.StatusOK))
	open := e.client(nil)
	ch := decodeAs[auth.SignupChallenge](e.t, e.call(open, "POST", "/v1/signup/begin", auth.SignupRequest{Token: inv.Token}, http.StatusOK))
	if ch.User != name || ch.Secret == "" {
		e.t.Fatalf("signup challenge %+v", ch)
	}
	priv, pub := newKey(e.t)
	resp := decodeAs[*auth.LoginResponse](e.t, e.call(open, "POST", "/v1/signup/complete",
		auth.SignupRequest{Token: inv.Token, Password: "a good long password", OTP: e.totp(ch.Secret), PublicKey: pub}, http.StatusOK))
	if resp == nil || resp.User != name {
		e.t.Fatalf("signup of %s returned %+v", name, resp)
	}
	return e.certClient(priv, resp.Certs), signedUp{resp, ch.Secret}
}

// signedUp is a user's first certificates and TOTP secret.
type signedUp struct {
	*auth.LoginResponse
	secret string
}

// TestEveryRouteReachesItsHandler sends a request to every route of the
// API, as the caller it is for, and checks the answer is that handler's:
// what it changed, what it returned, or an error only it gives. Routes
// added without a case here fail the test.
func TestEveryRouteReachesItsHandler(t *testing.T) {
	e := newEnv(t)
	ctx := patience.Context(t)
	admin, open := e.admin(), e.client(nil)

	// Open routes, and who is asking.
	ping := decodeAs[PingResponse](t, e.call(open, "GET", "/v1/ping", nil, http.StatusOK))
	if ping.Cluster != "test" || ping.checkCA() != nil {
		t.Errorf("ping: %+v", ping)
	}
	if who := decodeAs[WhoAmI](t, e.call(admin, "GET", "/v1/whoami", nil, http.StatusOK)); who.Kind != auth.KindAdmin {
		t.Errorf("whoami as admin: %+v", who)
	}

	// Roles.
	roles, err := policy.ParseRoles([]byte(testRoles))
	if err != nil {
		t.Fatal(err)
	}
	e.call(admin, "PUT", "/v1/roles/other", roles[0], http.StatusBadRequest)
	for _, r := range roles {
		e.call(admin, "PUT", "/v1/roles/"+r.Metadata.Name, r, http.StatusOK)
	}
	var names []string
	for _, r := range decodeAs[[]*policy.Role](t, e.call(admin, "GET", "/v1/roles", nil, http.StatusOK)) {
		names = append(names, r.Metadata.Name)
	}
	for _, r := range roles {
		if !slices.Contains(names, r.Metadata.Name) {
			t.Errorf("roles %v lack %s", names, r.Metadata.Name)
		}
	}
	if got := decodeAs[policy.Role](t, e.call(admin, "GET", "/v1/roles/prod", nil, http.StatusOK)); got.Metadata.Name != "prod" {
		t.Errorf("role prod: %+v", got.Metadata)
	}

	// Users: invite and signup, then login.
	alice, aliceLogin := e.signup(admin, "alice", "dev")
	bob, _ := e.signup(admin, "bob", "reviewer")
	if who := decodeAs[WhoAmI](t, e.call(alice, "GET", "/v1/whoami", nil, http.StatusOK)); who.Kind != auth.KindUser || who.User != "alice" {
		t.Errorf("whoami as alice: %+v", who)
	}
	_, pub := newKey(t)
	e.call(open, "POST", "/v1/login", auth.LoginRequest{User: "alice", Password: "wrong password!!", OTP: "000000", PublicKey: pub}, http.StatusUnauthorized)
	if got := decodeAs[auth.LoginResponse](t, e.call(open, "POST", "/v1/login", auth.LoginRequest{User: "alice", Password: "a good long password",
		OTP: e.totp(aliceLogin.secret), PublicKey: pub}, http.StatusOK)); got.User != "alice" || got.TLSCert == "" {
		t.Errorf("login: %+v", got)
	}
	users := decodeAs[[]auth.UserInfo](t, e.call(admin, "GET", "/v1/users", nil, http.StatusOK))
	if len(users) != 2 {
		t.Errorf("users: %+v", users)
	}
	if u := decodeAs[auth.UserInfo](t, e.call(admin, "PATCH", "/v1/users/bob", auth.UpdateUserRequest{Roles: []string{"reviewer", "dev"}}, http.StatusOK)); u.Name != "bob" || len(u.Roles) != 2 {
		t.Errorf("update bob: %+v", u)
	}

	// Access requests: alice asks, bob approves, alice uses, bob's
	// review of a revoked one is refused.
	if s := decodeAs[Suggestion](t, e.call(alice, "GET", "/v1/access_requests/suggest?login=root&node=db1", nil, http.StatusOK)); !slices.Equal(s.Roles, []string{"prod"}) {
		t.Errorf("suggestion for root on db1: %+v", s)
	}
	req := decodeAs[access.Request](t, e.call(alice, "POST", "/v1/access_requests", auth.CreateAccessRequest{Roles: []string{"prod"}, Reason: "deploy"}, http.StatusOK))
	if req.ID == "" || req.State != access.StatePending {
		t.Fatalf("access request: %+v", req)
	}
	if got := decodeAs[[]*access.Request](t, e.call(bob, "GET", "/v1/access_requests", nil, http.StatusOK)); len(got) != 1 || got[0].ID != req.ID {
		t.Errorf("bob's list: %+v", got)
	}
	if got := decodeAs[access.Request](t, e.call(alice, "GET", "/v1/access_requests/"+req.ID, nil, http.StatusOK)); got.ID != req.ID {
		t.Errorf("get request: %+v", got)
	}
	e.call(alice, "GET", "/v1/access_requests/nope", nil, http.StatusNotFound)
	if got := decodeAs[access.Request](t, e.call(bob, "POST", "/v1/access_requests/"+req.ID+"/review", ReviewBody{Approve: true, Reason: "ok"}, http.StatusOK)); got.State != access.StateApproved {
		t.Errorf("after bob's approval: %+v", got)
	}
	if got := decodeAs[auth.LoginResponse](t, e.call(alice, "POST", "/v1/access_requests/"+req.ID+"/use", renewRequest{PublicKey: pub}, http.StatusOK)); !slices.Contains(got.Roles, "prod") {
		t.Errorf("certificates for the request carry roles %v", got.Roles)
	}
	if got := decodeAs[access.Request](t, e.call(admin, "POST", "/v1/access_requests/"+req.ID+"/revoke", ReviewBody{Reason: "done"}, http.StatusOK)); got.State != access.StateRevoked {
		t.Errorf("after revoke: %+v", got)
	}

	// Locks.
	created := decodeAs[auth.CreateLockResult](t, e.call(admin, "POST", "/v1/locks", auth.CreateLockRequest{Target: lock.Target{User: "mallory"}, Message: "gone"}, http.StatusOK))
	if created.Lock == nil || created.Lock.ID == "" {
		t.Fatalf("lock: %+v", created)
	}
	if got := decodeAs[[]*lock.Lock](t, e.call(admin, "GET", "/v1/locks", nil, http.StatusOK)); !slices.ContainsFunc(got, func(l *lock.Lock) bool {
		return l.ID == created.Lock.ID && l.Target.User == "mallory"
	}) {
		t.Errorf("locks lack %+v", created.Lock)
	}
	e.call(admin, "DELETE", "/v1/locks/"+created.Lock.ID, nil, http.StatusOK)
	e.call(admin, "DELETE", "/v1/locks/"+created.Lock.ID, nil, http.StatusNotFound)

	// Join tokens, and a node joining with one.
	tok := decodeAs[auth.TokenResult](t, e.call(admin, "POST", "/v1/tokens", auth.CreateTokenRequest{Type: "node", TTL: time.Hour}, http.StatusOK))
	spare := decodeAs[auth.TokenResult](t, e.call(admin, "POST", "/v1/tokens", auth.CreateTokenRequest{Type: "node", TTL: time.Hour}, http.StatusOK))
	if got := decodeAs[[]auth.Token](t, e.call(admin, "GET", "/v1/tokens", nil, http.StatusOK)); len(got) != 2 {
		t.Errorf("tokens: %+v", got)
	}
	e.call(admin, "DELETE", "/v1/tokens/"+spare.Token, nil, http.StatusOK)
	e.call(admin, "DELETE", "/v1/tokens/"+spare.Token, nil, http.StatusNotFound)
	nodePriv, nodePub := newKey(t)
	joined := decodeAs[auth.JoinResponse](t, e.call(open, "POST", "/v1/nodes/join", auth.JoinRequest{Token: tok.Token, Name: "web1", Hostname: "web1.example.test", PublicKey: nodePub}, http.StatusOK))
	if joined.NodeID == "" {
		t.Fatalf("join: %+v", joined)
	}
	node := e.certClient(nodePriv, joined.Certs)
	if who := decodeAs[WhoAmI](t, e.call(node, "GET", "/v1/whoami", nil, http.StatusOK)); who.Kind != auth.KindNode || who.NodeID != joined.NodeID {
		t.Errorf("whoami as the node: %+v", who)
	}
	_, renewPub := newKey(t)
	if got := decodeAs[auth.Certs](t, e.call(node, "POST", "/v1/nodes/renew", renewRequest{PublicKey: renewPub}, http.StatusOK)); got.TLSCert == "" {
		t.Errorf("renewed certs: %+v", got)
	}
	// The inventory (see newEnv) filtered by label; a filter must be
	// key=value.
	if got := decodeAs[[]auth.Node](t, e.call(admin, "GET", "/v1/nodes?label=env=dev", nil, http.StatusOK)); len(got) != 1 || got[0].Name != "web1" {
		t.Errorf("nodes: %+v", got)
	}
	e.call(alice, "GET", "/v1/nodes?label=env", nil, http.StatusBadRequest)
	if got := e.call(admin, "GET", "/v1/nodes?label=env=none", nil, http.StatusOK); string(got) != "[]\n" {
		t.Errorf("no nodes listed as %q, want []", got)
	}
	// Kubernetes clusters (none connected here): the route reaches
	// ListKubeClusters, which refuses a node.
	if got := decodeAs[wire.KubeClusterList](t, e.call(admin, "GET", "/v1/kube/clusters", nil, http.StatusOK)); got.Clusters == nil {
		t.Errorf("kube clusters: %+v", got)
	}
	e.call(node, "GET", "/v1/kube/clusters", nil, http.StatusForbidden)

	// The node's audit events and recordings.
	e.call(node, "POST", "/v1/events", []audit.Event{{Event: audit.SessionStart, SessionID: "s1", User: "alice", Login: "alice",
		Time: e.clock.Now(), Success: true}}, http.StatusOK)
	metaOf := func(id string) string {
		meta, err := json.Marshal(recording.Meta{SessionID: id, User: "alice", Login: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(meta)
	}
	e.call(node, "PUT", "/v1/recordings/s1?offset=0", "x", http.StatusBadRequest) // no metadata header
	unknown := decodeAs[Error](t, e.call(node, "PUT", "/v1/recordings/s2?offset=0", "x", http.StatusForbidden, RecordingMetaHeader, metaOf("s2")))
	if unknown.Code != CodeSessionUnknown {
		t.Errorf("a recording of a session auth never heard of: %+v", unknown)
	}
	cast := `{"version":2,"width":80,"height":24,"timestamp":1}` + "\n" + `[0.1,"o","hello"]` + "\n"
	if got := decodeAs[LengthBody](t, e.call(node, "PUT", "/v1/recordings/s1?offset=0", cast, http.StatusOK, RecordingMetaHeader, metaOf("s1"))); got.Length != int64(len(cast)) {
		t.Errorf("append: %+v", got)
	}
	gap := strconv.Itoa(len(cast) + 5)
	again := decodeAs[Error](t, e.call(node, "PUT", "/v1/recordings/s1?offset="+gap, "x", http.StatusConflict, RecordingMetaHeader, metaOf("s1")))
	if again.Code != CodeOffset || again.Length != int64(len(cast)) {
		t.Errorf("a chunk where the recording does not end: %+v", again)
	}
	sum := sha256.Sum256([]byte(cast))
	e.call(node, "POST", "/v1/recordings/s1/complete", CompleteBody{Length: int64(len(cast)), SHA256: hex.EncodeToString(sum[:])}, http.StatusOK)
	if got := decodeAs[[]recording.Info](t, e.call(admin, "GET", "/v1/recordings?user=alice", nil, http.StatusOK)); len(got) != 1 || got[0].SessionID != "s1" {
		t.Errorf("recordings: %+v", got)
	}
	e.call(admin, "GET", "/v1/recordings?since=yesterday", nil, http.StatusBadRequest)
	if got := decodeAs[[]auth.RecordingMatch](t, e.call(admin, "GET", "/v1/recordings/search?text=hello", nil, http.StatusOK)); len(got) != 1 {
		t.Errorf("recording search: %+v", got)
	}
	if got := decodeAs[[]auth.RecordingCheck](t, e.call(admin, "GET", "/v1/recordings/verify?session=s1", nil, http.StatusOK)); len(got) != 1 || got[0].Status != auth.RecordingIntact {
		t.Errorf("recording verify: %+v", got)
	}
	rec, err := admin.OpenRecording(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	played, err := io.ReadAll(rec)
	rec.Close()
	if err != nil || string(played) != cast {
		t.Errorf("recording s1: %q, %v", played, err)
	}
	e.served("GET", "/v1/recordings/s1") // nor does OpenRecording
	e.call(admin, "GET", "/v1/recordings/s2", nil, http.StatusNotFound)
	if got := decodeAs[[]auth.LiveSession](t, e.call(admin, "GET", "/v1/sessions", nil, http.StatusOK)); len(got) != 1 || got[0].ID != "s1" {
		t.Errorf("live sessions: %+v", got)
	}

	// The audit log: search, verify, key, and the streams.
	if got := decodeAs[[]audit.Event](t, e.call(admin, "GET", "/v1/audit?type="+audit.SessionStart, nil, http.StatusOK)); len(got) != 1 || got[0].SessionID != "s1" {
		t.Errorf("audit search: %+v", got)
	}
	e.call(admin, "GET", "/v1/audit?limit=-1", nil, http.StatusBadRequest)
	if got := decodeAs[audit.VerifyResult](t, e.call(admin, "GET", "/v1/audit/verify", nil, http.StatusOK)); !got.OK || got.Checked == 0 {
		t.Errorf("audit verify: %+v", got)
	}
	if got := decodeAs[AuditKey](t, e.call(admin, "GET", "/v1/audit/key", nil, http.StatusOK)); !strings.Contains(got.PublicKey, "PUBLIC KEY") {
		t.Errorf("audit key: %+v", got)
	}
	e.call(admin, "GET", "/v1/audit/stream?after=x", nil, http.StatusBadRequest)
	streamCtx, stop := context.WithCancel(ctx)
	var first audit.Event
	err = admin.TailAudit(streamCtx, 0, func(ev audit.Event) error { first = ev; stop(); return nil })
	if first.Seq == 0 || (err != nil && streamCtx.Err() == nil) {
		t.Errorf("audit stream: first event %+v, %v", first, err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	var snap WatchEvent
	_ = node.Watch(watchCtx, func(ev WatchEvent) { snap = ev; stopWatch() })
	if snap.Type != "snapshot" || len(snap.Roles) < len(roles) {
		t.Errorf("watch: first event %+v", snap)
	}
	e.served("GET", "/v1/audit/stream") // TailAudit and Watch do not go through call
	e.served("GET", "/v1/watch")

	// Reset and remove a user, and a role.
	if got := decodeAs[auth.InviteResult](t, e.call(admin, "POST", "/v1/users/bob/reset", nil, http.StatusOK)); got.User != "bob" || got.Token == "" {
		t.Errorf("reset: %+v", got)
	}
	e.call(bob, "GET", "/v1/whoami", nil, http.StatusForbidden) // reset: the certificate no longer works
	e.call(admin, "DELETE", "/v1/users/bob", nil, http.StatusOK)
	e.call(admin, "DELETE", "/v1/users/bob", nil, http.StatusNotFound)
	e.call(admin, "DELETE", "/v1/roles/reviewer", nil, http.StatusOK)
	e.call(admin, "GET", "/v1/roles/reviewer", nil, http.StatusNotFound)

	// OIDC connectors and SSO logins (the flow itself, against a real
	// IdP, is clustertest's TestOIDCLogin): each route's own answer.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := wire.OIDCConnector{Kind: wire.KindOIDC, Metadata: wire.ConnectorMetadata{Name: "corp"},
		Spec: wire.OIDCConnectorSpec{IssuerURL: "https://idp.example.com", ClientID: "warden", ClientSecretFile: secret,
			RedirectURL:   "https://proxy:3080/v1/sso/oidc/callback",
			ClaimsToRoles: []wire.ClaimMapping{{Claim: "groups", Value: "ops", Roles: []string{"access"}}}}}
	e.call(admin, "PUT", "/v1/connectors/oidc/other", conn, http.StatusBadRequest) // the name must match
	e.call(admin, "PUT", "/v1/connectors/oidc/corp", conn, http.StatusOK)
	if got := decodeAs[[]*wire.OIDCConnector](t, e.call(admin, "GET", "/v1/connectors/oidc", nil, http.StatusOK)); len(got) != 1 || got[0].Metadata.Name != "corp" {
		t.Errorf("connectors: %+v", got)
	}
	if got := decodeAs[wire.OIDCConnector](t, e.call(admin, "GET", "/v1/connectors/oidc/corp", nil, http.StatusOK)); got.Spec.ClientID != "warden" {
		t.Errorf("connector: %+v", got)
	}
	e.call(open, "POST", "/v1/sso/oidc/begin", wire.SSOBeginRequest{Connector: "nope", PublicKey: pub, ClientRedirect: "http://127.0.0.1:1/cb"}, http.StatusNotFound)
	e.call(open, "GET", "/v1/sso/oidc/callback?state=unknown&code=x", nil, http.StatusUnauthorized)                            // unknown state
	e.call(open, "POST", "/v1/sso/oidc/result", wire.SSOResultRequest{ID: "unknown", ResultToken: "x"}, http.StatusBadRequest) // bad login id
	e.call(admin, "DELETE", "/v1/connectors/oidc/corp", nil, http.StatusOK)
	e.call(admin, "GET", "/v1/connectors/oidc/corp", nil, http.StatusNotFound)

	// SAML connectors, the SP metadata and the ACS (the flow itself, against
	// a real IdP, is auth's TestSAMLRefusals and clustertest's TestSAMLLogin).
	sconn := wire.SAMLConnector{Kind: wire.KindSAML, Metadata: wire.ConnectorMetadata{Name: "okta"},
		Spec: wire.SAMLConnectorSpec{IdPMetadataURL: "https://idp.example.com/metadata", SignRequests: true,
			AttributesToRoles: []wire.AttributeMapping{{Attribute: "groups", Value: "ops", Roles: []string{"access"}}}}}
	e.call(admin, "PUT", "/v1/connectors/saml/other", sconn, http.StatusBadRequest) // the name must match
	e.call(admin, "PUT", "/v1/connectors/saml/okta", sconn, http.StatusOK)
	if got := decodeAs[[]*wire.SAMLConnector](t, e.call(admin, "GET", "/v1/connectors/saml", nil, http.StatusOK)); len(got) != 1 || got[0].Metadata.Name != "okta" {
		t.Errorf("saml connectors: %+v", got)
	}
	got := e.call(admin, "GET", "/v1/connectors/saml/okta", nil, http.StatusOK)
	if strings.Contains(string(got), "PRIVATE") || !strings.Contains(string(got), "idp.example.com") {
		t.Errorf("saml connector: %s", got)
	}
	if md := e.call(open, "GET", "/v1/sso/saml/okta/metadata", nil, http.StatusOK); !strings.Contains(string(md), "/v1/sso/saml/okta/acs") ||
		strings.Contains(string(md), "PRIVATE") {
		t.Errorf("SP metadata: %s", md)
	}
	e.call(open, "GET", "/v1/sso/saml/nope/metadata", nil, http.StatusNotFound)
	form := "application/x-www-form-urlencoded"
	e.call(open, "POST", "/v1/sso/saml/okta/acs", "SAMLResponse=PHg%2B&RelayState=unknown", http.StatusUnauthorized, "Content-Type", form)
	e.call(open, "POST", "/v1/sso/saml/okta/acs", "SAMLResponse=PHg%2B", http.StatusBadRequest, "Content-Type", form) // no RelayState
	e.call(open, "POST", "/v1/sso/saml/okta/acs", "RelayState=x&SAMLResponse="+strings.Repeat("A", auth.MaxSAMLResponse+16<<10),
		http.StatusRequestEntityTooLarge, "Content-Type", form)
	e.call(admin, "DELETE", "/v1/connectors/saml/okta", nil, http.StatusOK)
	e.call(admin, "GET", "/v1/connectors/saml/okta", nil, http.StatusNotFound)
	// Bots: add one, join it with its token, renew, get an output's
	// certificates, list, remove.
	bot := decodeAs[wire.CreateBotResult](t, e.call(admin, "POST", "/v1/bots", wire.CreateBotRequest{Name: "ci", Roles: []string{"dev"}, Logins: []string{"deploy"}}, http.StatusOK))
	e.call(admin, "POST", "/v1/bots", wire.CreateBotRequest{Name: "ci", Roles: []string{"dev"}}, http.StatusConflict)
	botPriv, botPub := newKey(t)
	e.clock.Advance(time.Second) // certificates issued after the bot was made
	e.call(open, "POST", "/v1/bots/join", wire.BotJoinRequest{Token: "nope", PublicKey: botPub}, http.StatusUnauthorized)
	botCerts := decodeAs[wire.BotCerts](t, e.call(open, "POST", "/v1/bots/join", wire.BotJoinRequest{Token: bot.Token.Token, PublicKey: botPub}, http.StatusOK))
	if botCerts.Generation != 1 || botCerts.User != "bot-ci" {
		t.Errorf("bot join: %+v", botCerts)
	}
	botClient := e.certClient(botPriv, botCerts.Certs)
	e.call(alice, "POST", "/v1/bots/renew", wire.BotCertsRequest{PublicKey: botPub}, http.StatusForbidden) // not a bot
	if got := decodeAs[wire.BotCerts](t, e.call(botClient, "POST", "/v1/bots/certs", wire.BotCertsRequest{PublicKey: botPub, Roles: []string{"dev"}}, http.StatusOK)); got.Generation != 0 || !slices.Equal(got.Roles, []string{"dev"}) {
		t.Errorf("bot output: %+v", got)
	}
	e.call(botClient, "POST", "/v1/bots/certs", wire.BotCertsRequest{PublicKey: botPub, Roles: []string{"prod"}}, http.StatusForbidden) // wider
	if got := decodeAs[wire.BotCerts](t, e.call(botClient, "POST", "/v1/bots/renew", wire.BotCertsRequest{PublicKey: botPub}, http.StatusOK)); got.Generation != 2 {
		t.Errorf("bot renewal: %+v", got)
	}
	if got := decodeAs[[]wire.BotInfo](t, e.call(admin, "GET", "/v1/bots", nil, http.StatusOK)); len(got) != 1 || got[0].Name != "ci" || len(got[0].Instances) != 1 {
		t.Errorf("bots: %+v", got)
	}
	e.call(admin, "DELETE", "/v1/bots/ci", nil, http.StatusOK)
	e.call(admin, "DELETE", "/v1/bots/ci", nil, http.StatusNotFound)
	// MFA devices and the passkey hand-off (WebAuthn itself: auth's
	// TestPasskey* and the web UI's browser tests).
	if got := decodeAs[wire.MFADevices](t, e.call(alice, "GET", "/v1/mfa/devices", nil, http.StatusOK)); len(got.Devices) != 1 || got.Devices[0].Kind != "totp" {
		t.Errorf("devices: %+v", got)
	}
	add := decodeAs[wire.MFAAddChallenge](t, e.call(alice, "POST", "/v1/mfa/devices/begin", wire.MFAAddRequest{Kind: "totp", Name: "phone"}, http.StatusOK))
	if got := decodeAs[wire.MFADevice](t, e.call(alice, "POST", "/v1/mfa/devices/finish", wire.MFAAddFinish{ID: add.ID, OTP: e.totp(add.TOTPSecret)}, http.StatusOK)); got.Name != "phone" {
		t.Errorf("added device: %+v", got)
	}
	e.call(alice, "DELETE", "/v1/mfa/devices/phone", nil, http.StatusOK)
	e.call(alice, "DELETE", "/v1/mfa/devices/phone", nil, http.StatusNotFound)
	if got := decodeAs[wire.MFAChallenge](t, e.call(alice, "POST", "/v1/mfa/challenge", nil, http.StatusOK)); !got.TOTP {
		t.Errorf("MFA challenge: %+v", got)
	}
	e.call(alice, "POST", "/v1/mfa/verify", wire.MFAResponse{OTP: "000000"}, http.StatusUnauthorized)
	e.call(alice, "POST", "/v1/session-mfa/status", wire.SessionMFAQuery{Nodes: []string{"no-such-node"}, Login: "alice"}, http.StatusNotFound)
	e.call(alice, "POST", "/v1/session-mfa/certs", wire.SessionCertRequest{}, http.StatusBadRequest)
	e.call(alice, "POST", "/v1/mfa/recovery-codes", wire.MFAResponse{}, http.StatusBadRequest)
	e.call(alice, "POST", "/v1/mfa/handoff", wire.PasskeyHandoffBegin{ClientRedirect: "http://evil.example/cb"}, http.StatusBadRequest)
	e.call(open, "POST", "/v1/mfa/handoff/result", wire.PasskeyResultRequest{ID: "unknown"}, http.StatusBadRequest)
	e.call(open, "POST", "/v1/passkey/begin", wire.PasskeyHandoffBegin{PublicKey: "not a key", ClientRedirect: "http://127.0.0.1:1/cb"}, http.StatusBadRequest)
	e.call(open, "POST", "/v1/passkey/result", wire.PasskeyResultRequest{ID: "unknown", ResultToken: "x"}, http.StatusBadRequest)
	exerciseAgentlessRoutes(t, e, admin)
	exerciseProxyRoutes(t, e, admin)
	exerciseWebRoutes(t, e, admin)

	for _, p := range routePatterns(t) {
		if !e.patterns[p] {
			t.Errorf("route %q was not exercised: add it to this test", p)
		}
	}
}

// TestRoutingRefusesWhatNoRouteServes: an unknown path is 404, a known
// path with another method 405, and the methods a path allows are listed.
func TestRoutingRefusesWhatNoRouteServes(t *testing.T) {
	e := newEnv(t)
	admin := e.admin()
	e.call(admin, "GET", "/v1/nothing", nil, http.StatusNotFound)
	resp, _ := e.send(admin, "DELETE", "/v1/ping", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Errorf("DELETE /v1/ping: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}
