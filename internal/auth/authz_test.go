package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
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
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// What a caller gets from an operation.
type outcome string

const (
	deny outcome = "deny" // refused: access denied
	all  outcome = "all"  // the whole operation
	own  outcome = "own"  // only its own share (its requests, the nodes its roles allow, its event types)
)

// The callers of the matrix, in its column order.
var matrixCallers = []string{"no roles", "access", "auditor", "admin role", "node", "proxy", "admin"}

// row is what each caller of matrixCallers gets, in order.
type row [7]outcome

// matrix is what every caller gets from every exported method of
// auth.Server that takes a Caller. TestPermissionMatrix fails on a method
// missing here, so a new one cannot go unpinned.
var matrix = map[string]row{
	//                       no roles access auditor admin role node  proxy  admin
	"SearchAudit":                   {deny, deny, all, all, deny, deny, all},
	"SubscribeAudit":                {deny, deny, all, all, deny, deny, all},
	"VerifyAudit":                   {deny, deny, all, all, deny, deny, all},
	"ClusterHealth":                 {deny, deny, deny, all, deny, deny, all},
	"ClusterSettings":               {deny, deny, deny, all, deny, deny, all},
	"UpdateClusterSettings":         {deny, deny, deny, all, deny, deny, all},
	"ExportAuditKey":                {deny, deny, all, all, deny, deny, all},
	"EmitEvents":                    {deny, deny, deny, deny, own, own, deny},
	"Emitter":                       {deny, deny, deny, deny, own, own, deny},
	"CurrentCaller":                 {all, all, all, all, all, all, all},
	"CheckCaller":                   {all, all, all, all, all, all, all},
	"RecordWebLogout":               {all, all, all, all, deny, deny, deny},
	"RecordWebTerminalResume":       {all, all, all, all, deny, deny, deny},
	"AllowedLogins":                 {all, all, all, all, deny, deny, deny},
	"ListMFADevices":                {all, all, all, all, deny, deny, deny},
	"BeginAddMFADevice":             {all, all, all, all, deny, deny, deny},
	"FinishAddMFADevice":            {all, all, all, all, deny, deny, deny},
	"DeleteMFADevice":               {all, all, all, all, deny, deny, deny},
	"BeginMFAChallenge":             {all, all, all, all, deny, deny, deny},
	"VerifyMFA":                     {all, all, all, all, deny, deny, deny},
	"SessionMFAStatus":              {all, all, all, all, deny, deny, deny},
	"IssueSessionCert":              {all, all, all, all, deny, deny, deny},
	"RegenerateRecoveryCodes":       {all, all, all, all, deny, deny, deny},
	"BeginMFAHandoff":               {all, all, all, all, deny, deny, deny},
	"CreateLock":                    {deny, deny, deny, all, deny, deny, all},
	"ListLocks":                     {deny, deny, deny, all, all, deny, all},
	"DeleteLock":                    {deny, deny, deny, all, deny, deny, all},
	"CreateToken":                   {deny, deny, deny, all, deny, deny, all},
	"ListTokens":                    {deny, deny, deny, all, deny, deny, all},
	"DeleteToken":                   {deny, deny, deny, all, deny, deny, all},
	"RenewNodeCerts":                {deny, deny, deny, deny, all, deny, deny},
	"CreateBot":                     {deny, deny, deny, all, deny, deny, all},
	"ListBots":                      {deny, deny, deny, all, deny, deny, all},
	"DeleteBot":                     {deny, deny, deny, all, deny, deny, all},
	"RenewBotCerts":                 {all, all, all, all, deny, deny, deny},
	"BotOutputCerts":                {all, all, all, all, deny, deny, deny},
	"ListNodes":                     {own, all, own, all, deny, deny, all},
	"Watch":                         {deny, deny, deny, deny, all, all, all},
	"RenewProxyCerts":               {deny, deny, deny, deny, deny, all, deny},
	"IssueProxyWebCert":             {deny, deny, deny, deny, deny, all, deny},
	"ProxyBeginPasskeyLogin":        {deny, deny, deny, deny, deny, all, deny},
	"ProxyFinishPasskeyLogin":       {deny, deny, deny, deny, deny, all, deny},
	"ProxyFinishPasskeyHandoff":     {deny, deny, deny, deny, deny, all, deny},
	"ProxyBeginHandoffMFAChallenge": {deny, deny, deny, deny, deny, all, deny},
	"ProxyFinishMFAHandoff":         {deny, deny, deny, deny, deny, all, deny},
	"ProxyBeginEnrolPasskey":        {deny, deny, deny, deny, deny, all, deny},
	"ProxyFinishEnrolPasskey":       {deny, deny, deny, deny, deny, all, deny},
	"ProxyCheckUser":                {deny, deny, deny, deny, deny, all, deny},
	"ProxyNodeRegistration":         {deny, deny, deny, deny, deny, all, deny},
	"ProxySpendSessionCert":         {deny, deny, deny, deny, deny, all, deny},
	"PublishProxyInventory":         {deny, deny, deny, deny, deny, all, deny},
	"ProxyAuthorizeKube":            {deny, deny, deny, deny, deny, all, deny},
	"ProxyPeerPut":                  {deny, deny, deny, deny, deny, all, deny},
	"ProxyPeerDelete":               {deny, deny, deny, deny, deny, all, deny},
	"ProxyPeerList":                 {deny, deny, deny, deny, deny, all, deny},
	"ProxyPeerWatch":                {deny, deny, deny, deny, deny, all, deny},
	"IssueProxyPeerCert":            {deny, deny, deny, deny, deny, all, deny},
	"OpenRecording":                 {deny, deny, all, all, deny, deny, all},
	"OpenRecordingAt":               {deny, deny, all, all, deny, deny, all},
	"VerifyRecordings":              {deny, deny, all, all, deny, deny, all},
	"ListRecordings":                {deny, deny, all, all, deny, deny, all},
	"SearchRecordings":              {deny, deny, all, all, deny, deny, all},
	"AppendRecording":               {deny, deny, deny, deny, all, deny, deny},
	"AppendLocalRecording":          {deny, deny, deny, deny, all, deny, deny},
	"CompleteRecording":             {deny, deny, deny, deny, all, deny, deny},
	"CreateAccessRequest":           {all, all, all, all, deny, deny, deny},
	"ListAccessRequests":            {own, own, own, all, deny, deny, all},
	"GetAccessRequest":              {own, own, own, all, deny, deny, all},
	"ReviewAccessRequest":           {all, all, all, all, deny, deny, deny},
	"RevokeAccessRequest":           {own, own, own, all, deny, deny, all},
	"UseAccessRequest":              {all, all, all, all, deny, deny, deny},
	"SuggestRoles":                  {all, all, all, all, deny, deny, deny},
	"UpsertRole":                    {deny, deny, deny, all, deny, deny, all},
	"GetRole":                       {deny, deny, deny, all, deny, deny, all},
	"ListRoles":                     {deny, deny, deny, all, all, deny, all},
	"DeleteRole":                    {deny, deny, deny, all, deny, deny, all},
	"UpsertConnector":               {deny, deny, deny, all, deny, deny, all},
	"GetConnector":                  {deny, deny, deny, all, deny, deny, all},
	"ListConnectors":                {deny, deny, deny, all, deny, deny, all},
	"DeleteConnector":               {deny, deny, deny, all, deny, deny, all},
	"UpsertSAMLConnector":           {deny, deny, deny, all, deny, deny, all},
	"GetSAMLConnector":              {deny, deny, deny, all, deny, deny, all},
	"ListSAMLConnectors":            {deny, deny, deny, all, deny, deny, all},
	"DeleteSAMLConnector":           {deny, deny, deny, all, deny, deny, all},
	"ListSessions":                  {deny, deny, all, all, deny, deny, all},
	"CreateUser":                    {deny, deny, deny, all, deny, deny, all},
	"ListUsers":                     {deny, deny, deny, all, deny, deny, all},
	"DeleteUser":                    {deny, deny, deny, all, deny, deny, all},
	"UpdateUser":                    {deny, deny, deny, all, deny, deny, all},
	"ResetUser":                     {deny, deny, deny, all, deny, deny, all},
	"SignHostCert":                  {deny, deny, deny, all, deny, deny, all},
	"UpsertAgentlessNode":           {deny, deny, deny, all, deny, deny, all},
	"DeleteAgentlessNode":           {deny, deny, deny, all, deny, deny, all},
	"ListAgentlessNodes":            {deny, deny, deny, all, deny, deny, all},
	"AuthorizeAgentless":            {deny, deny, deny, deny, deny, all, deny},
	"IssueAgentlessCert":            {deny, deny, deny, deny, deny, all, deny},
	"ProxyListAgentless":            {deny, deny, deny, deny, deny, all, deny},
	"ProxyAuthorizeAgentless":       {deny, deny, deny, deny, deny, all, deny},
	"ProxyIssueAgentlessCert":       {deny, deny, deny, deny, deny, all, deny},
	"ProxyAgentlessHostCert":        {deny, deny, deny, deny, deny, all, deny},
	"ProxyAgentlessCaller":          {deny, deny, deny, deny, deny, all, deny},
	"KRL":                           {deny, deny, deny, all, own, deny, all},
}

// gate is the outcome of a call that either is refused or goes past the
// authorization (whatever it then finds: a probe names nothing that exists
// where it could change state).
func gate(err error) outcome {
	if errors.Is(err, auth.ErrAccessDenied) {
		return deny
	}
	return all
}

// matrixFixture is a cluster state every probe can run against: users
// with each built-in role (and one whose only role grants nothing), a
// joined node, two live nodes, and an access request of another user.
type matrixFixture struct {
	*fixture
	callers map[string]auth.Caller
	// others is the id of a pending access request of another user.
	others string
	seq    int
}

func newMatrixFixture(t *testing.T) *matrixFixture {
	ctx := context.Background()
	rs, err := recording.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &matrixFixture{fixture: newFixture(t, func(c *auth.Config) { c.Recordings = rs }), callers: map[string]auth.Caller{}}
	nothing, err := policy.ParseRoles([]byte("kind: role\nmetadata: {name: nothing}\nspec: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.a.UpsertRole(ctx, auth.AdminCaller(), nothing[0]); err != nil {
		t.Fatal(err)
	}
	users := map[string][]string{"no roles": {"nothing"}, "access": {policy.RoleAccess},
		"auditor": {policy.RoleAuditor}, "admin role": {policy.RoleAdmin}}
	for _, col := range matrixCallers[:4] {
		name := strings.ReplaceAll(col, " ", "-")
		f.signup(name, users[col], []string{"root"})
		c, err := f.a.CurrentCaller(ctx, auth.Caller{Kind: auth.KindUser, User: name, Roles: users[col], Issued: f.clock.Now()}, "test", "")
		if err != nil {
			t.Fatal(err)
		}
		f.callers[col] = c
	}
	f.callers["node"] = f.joinNode("web1")
	f.callers["proxy"] = auth.ProxyCaller()
	f.callers["admin"] = auth.AdminCaller()
	// The "nothing" role allows no node; access and admin allow all.
	f.a.SetInventory(staticInventory{
		{ID: f.callers["node"].NodeID, Name: "web1", Labels: map[string]string{"env": "prod"}},
		{ID: "n2", Name: "db1", Labels: map[string]string{"env": "dev"}},
	})
	f.others = f.putRequest("someone-else")
	return f
}

// putRequest stores a pending access request of user, as if they had made
// it, and returns its id.
func (f *matrixFixture) putRequest(user string) string {
	f.t.Helper()
	f.seq++
	now := f.clock.Now().UTC()
	r := access.Request{ID: fmt.Sprintf("req-%d", f.seq), User: user, Roles: []string{policy.RoleAuditor}, State: access.StatePending,
		Thresholds: policy.Thresholds{Approve: 1, Deny: 1}, MaxDuration: time.Hour, Duration: time.Hour,
		Created: now, PendingExpires: now.Add(time.Hour)}
	b, err := json.Marshal(r)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.b.Create(context.Background(), storage.Item{Key: "/access_requests/" + r.ID, Value: b}); err != nil {
		f.t.Fatal(err)
	}
	return r.ID
}

// probes call each method as c and tell what c got.
var probes = map[string]func(f *matrixFixture, c auth.Caller) outcome{
	"SearchAudit": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.SearchAudit(context.Background(), c, audit.Query{Limit: 1})
		return gate(err)
	},
	"SubscribeAudit": func(f *matrixFixture, c auth.Caller) outcome {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, err := f.a.SubscribeAudit(ctx, c, 1<<40)
		return gate(err)
	},
	"ClusterSettings": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ClusterSettings(context.Background(), c)
		return gate(err)
	},
	"UpdateClusterSettings": func(f *matrixFixture, c auth.Caller) outcome {
		off := false
		_, err := f.a.UpdateClusterSettings(context.Background(), c, wire.ClusterSettings{RequirePasskey: &off})
		return gate(err)
	},
	"ClusterHealth": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ClusterHealth(context.Background(), c)
		return gate(err)
	},
	"VerifyAudit": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.VerifyAudit(context.Background(), c)
		return gate(err)
	},
	"ExportAuditKey": func(f *matrixFixture, c auth.Caller) outcome {
		_, _, err := f.a.ExportAuditKey(context.Background(), c)
		return gate(err)
	},
	"EmitEvents": func(f *matrixFixture, c auth.Caller) outcome {
		return emitOutcome(func(ev audit.Event) error { return f.a.EmitEvents(context.Background(), c, []audit.Event{ev}) })
	},
	"Emitter": func(f *matrixFixture, c auth.Caller) outcome {
		return emitOutcome(func(ev audit.Event) error { return f.a.Emitter(c).Emit(context.Background(), ev) })
	},
	"CurrentCaller": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.CurrentCaller(context.Background(), c, "test", "")
		return gate(err)
	},
	"CheckCaller": func(f *matrixFixture, c auth.Caller) outcome { return gate(f.a.CheckCaller(c)) },
	"AllowedLogins": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.AllowedLogins(c)
		return gate(err)
	},
	"ListMFADevices": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListMFADevices(context.Background(), c)
		return gate(err)
	},
	"BeginAddMFADevice": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.BeginAddMFADevice(context.Background(), c, wire.MFAAddRequest{Kind: "totp", Name: ""}) // an invalid name
		return gate(err)
	},
	"FinishAddMFADevice": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.FinishAddMFADevice(context.Background(), c, wire.MFAAddFinish{ID: "no-such-challenge", OTP: "123456"})
		return gate(err)
	},
	"DeleteMFADevice": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.DeleteMFADevice(context.Background(), c, "no-such-device"))
	},
	"BeginMFAChallenge": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.BeginMFAChallenge(context.Background(), c)
		return gate(err)
	},
	"VerifyMFA": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.VerifyMFA(context.Background(), c, wire.MFAResponse{})
		return gate(err)
	},
	"SessionMFAStatus": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.SessionMFAStatus(context.Background(), c, wire.SessionMFAQuery{})
		return gate(err)
	},
	"IssueSessionCert": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.IssueSessionCert(context.Background(), c, wire.SessionCertRequest{})
		return gate(err)
	},
	"RegenerateRecoveryCodes": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.RegenerateRecoveryCodes(context.Background(), c, wire.MFAResponse{})
		return gate(err)
	},
	"BeginMFAHandoff": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.BeginMFAHandoff(context.Background(), c, wire.PasskeyHandoffBegin{ClientRedirect: "http://evil.example/"}) // refused: not loopback
		return gate(err)
	},
	"RecordWebLogout": func(f *matrixFixture, c auth.Caller) outcome {
		f.seq++
		tag := fmt.Sprintf("probe-%d", f.seq)
		f.a.RecordWebLogout(context.Background(), c, tag, "")
		if len(f.events(audit.Query{Type: audit.UserLogout, Text: tag})) == 1 {
			return all
		}
		return deny
	},
	"RecordWebTerminalResume": func(f *matrixFixture, c auth.Caller) outcome {
		f.seq++
		tag := fmt.Sprintf("probe-%d", f.seq)
		f.a.RecordWebTerminalResume(context.Background(), c, auth.WebTerminalResume{Session: tag})
		if len(f.events(audit.Query{Type: audit.WebTerminalResume, Text: tag})) == 1 {
			return all
		}
		return deny
	},
	"CreateLock": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.CreateLock(context.Background(), c, auth.CreateLockRequest{Target: lock.Target{User: "nobody"}, TTL: -1})
		return gate(err)
	},
	"ListLocks": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListLocks(context.Background(), c)
		return gate(err)
	},
	"DeleteLock": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.DeleteLock(context.Background(), c, "no-such-lock"))
	},
	"CreateToken": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.CreateToken(context.Background(), c, auth.CreateTokenRequest{Type: "no-such-type"})
		return gate(err)
	},
	"ListTokens": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListTokens(context.Background(), c)
		return gate(err)
	},
	"DeleteToken": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.DeleteToken(context.Background(), c, "no-such-token"))
	},
	"CreateBot": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.CreateBot(context.Background(), c, wire.CreateBotRequest{Name: "-invalid"})
		return gate(err)
	},
	"ListBots": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListBots(context.Background(), c)
		return gate(err)
	},
	"DeleteBot": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.DeleteBot(context.Background(), c, "no-such-bot"))
	},
	// A user that is no bot passes the table and is refused by the method
	// (callerBot); the probe's key is refused before that.
	"RenewBotCerts": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.RenewBotCerts(context.Background(), c, wire.BotCertsRequest{PublicKey: "not a key"})
		return gate(err)
	},
	"BotOutputCerts": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.BotOutputCerts(context.Background(), c, wire.BotCertsRequest{PublicKey: "not a key"})
		return gate(err)
	},
	"RenewNodeCerts": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.RenewNodeCerts(context.Background(), c, "not a key")
		return gate(err)
	},
	"SignHostCert": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.SignHostCert(context.Background(), c, wire.SignHostRequest{Name: "probe", PublicKey: "not a key"})
		return gate(err)
	},
	"UpsertAgentlessNode": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.UpsertAgentlessNode(context.Background(), c, &auth.AgentlessNode{}))
	},
	"DeleteAgentlessNode": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.DeleteAgentlessNode(context.Background(), c, "no-such-server"))
	},
	"ListAgentlessNodes": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListAgentlessNodes(context.Background(), c)
		return gate(err)
	},
	"AuthorizeAgentless": func(f *matrixFixture, c auth.Caller) outcome {
		// A registered server: an unknown one is refused as such, whoever asks.
		ctx := context.Background()
		var n auth.AgentlessNode
		n.Metadata.Name, n.Spec.Addr = "probe-sshd", "127.0.0.1:22"
		if err := f.a.UpsertAgentlessNode(ctx, auth.AdminCaller(), &n); err != nil {
			f.t.Fatal(err)
		}
		defer func() { _ = f.a.DeleteAgentlessNode(ctx, auth.AdminCaller(), "probe-sshd") }()
		list, err := f.a.ListAgentlessNodes(ctx, auth.AdminCaller())
		if err != nil || len(list) == 0 || list[0].Status == nil {
			f.t.Fatalf("agentless servers: %v %v", list, err)
		}
		_, err = f.a.AuthorizeAgentless(ctx, c, f.callers["access"], auth.Node{Name: "probe-sshd", ID: list[0].Status.ID}, "root", "")
		return gate(err)
	},
	"IssueAgentlessCert": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.IssueAgentlessCert(context.Background(), c, auth.Caller{Kind: auth.KindUser, User: "nobody"}, auth.Node{Name: "x"}, "root", nil, policy.EffectiveOptions{}, "")
		return gate(err)
	},
	// Past the gate, each is refused for what it names (no such server).
	"ProxyListAgentless": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyListAgentless(context.Background(), c)
		return agentlessGate(err)
	},
	"ProxyAuthorizeAgentless": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyAuthorizeAgentless(context.Background(), c, f.callers["access"], auth.Node{Name: "x", ID: "y"}, "root", "")
		return agentlessGate(err)
	},
	"ProxyIssueAgentlessCert": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyIssueAgentlessCert(context.Background(), c, f.callers["access"], auth.Node{Name: "x", ID: "y"}, "root", "", nil, "")
		return agentlessGate(err)
	},
	"ProxyAgentlessHostCert": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyAgentlessHostCert(context.Background(), c, "x", "y", nil)
		return agentlessGate(err)
	},
	"ProxyAgentlessCaller": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyAgentlessCaller(context.Background(), c, "y")
		return agentlessGate(err)
	},
	"KRL": func(f *matrixFixture, c auth.Caller) outcome {
		if c.Kind == auth.KindNode {
			// A joined node is refused; an agentless server's identity
			// gets the KRL: its share.
			if _, err := f.a.KRL(context.Background(), c, "", 0); !errors.Is(err, auth.ErrAccessDenied) {
				return all
			}
			n := &auth.AgentlessNode{Spec: wire.AgentlessSpec{Addr: "127.0.0.1:1"}}
			n.Metadata.Name = "krl-probe"
			if err := f.a.UpsertAgentlessNode(context.Background(), auth.AdminCaller(), n); err != nil {
				f.t.Fatal(err)
			}
			defer func() { _ = f.a.DeleteAgentlessNode(context.Background(), auth.AdminCaller(), "krl-probe") }()
			c.NodeID = auth.AgentlessHostIDPrefix + "krl-probe"
			if _, err := f.a.KRL(context.Background(), c, "", 0); err != nil {
				return gate(err)
			}
			return own
		}
		_, err := f.a.KRL(context.Background(), c, "", 0)
		return gate(err)
	},
	"ListNodes": func(f *matrixFixture, c auth.Caller) outcome {
		nodes, err := f.a.ListNodes(context.Background(), c, nil)
		return share(err, len(nodes) == 2)
	},
	"RenewProxyCerts": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.RenewProxyCerts(context.Background(), c, "not a key")
		return gate(err)
	},
	"ProxyCheckUser": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyCheckUser(context.Background(), c, f.callers["access"], "probe", "")
		return gate(err)
	},
	"ProxyNodeRegistration": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyNodeRegistration(context.Background(), c, "no-such-node")
		return gate(err)
	},
	"ProxySpendSessionCert": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.ProxySpendSessionCert(context.Background(), c, 1, time.Now().Add(time.Minute), 1))
	},
	"ProxyPeerPut": func(f *matrixFixture, c auth.Caller) outcome {
		// Past the gate, a key outside /peering/ is a bad request.
		_, err := f.a.ProxyPeerPut(context.Background(), c, storage.Item{Key: "/probe", Value: []byte("{}")})
		return gate(err)
	},
	"ProxyPeerDelete": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.ProxyPeerDelete(context.Background(), c, "/peering/tunnels/no-proxy-part"))
	},
	"ProxyPeerList": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyPeerList(context.Background(), c)
		return gate(err)
	},
	"ProxyPeerWatch": func(f *matrixFixture, c auth.Caller) outcome {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, err := f.a.ProxyPeerWatch(ctx, c)
		return gate(err)
	},
	"IssueProxyWebCert": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.IssueProxyWebCert(context.Background(), c, "not a key")
		return gate(err)
	},
	"ProxyBeginPasskeyLogin": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyBeginPasskeyLogin(context.Background(), c, wire.PasskeyLoginBegin{RemoteAddr: "not an address"})
		return gate(err)
	},
	"ProxyFinishPasskeyLogin": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyFinishPasskeyLogin(context.Background(), c, wire.PasskeyLoginFinish{RemoteAddr: "not an address"})
		return gate(err)
	},
	"ProxyFinishPasskeyHandoff": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyFinishPasskeyHandoff(context.Background(), c, wire.PasskeyLoginFinish{RemoteAddr: "not an address"})
		return gate(err)
	},
	"ProxyBeginHandoffMFAChallenge": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyBeginHandoffMFAChallenge(context.Background(), c, "")
		return gate(err)
	},
	"ProxyFinishMFAHandoff": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyFinishMFAHandoff(context.Background(), c, "", wire.MFAResponse{})
		return gate(err)
	},
	"ProxyBeginEnrolPasskey": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyBeginEnrolPasskey(context.Background(), c, "not-a-token", "laptop")
		return gate(err)
	},
	"ProxyFinishEnrolPasskey": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ProxyFinishEnrolPasskey(context.Background(), c, wire.MFAAddFinish{ID: "not-a-ceremony"})
		return gate(err)
	},
	"IssueProxyPeerCert": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.IssueProxyPeerCert(context.Background(), c, "not a key")
		return gate(err)
	},
	"PublishProxyInventory": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.PublishProxyInventory(context.Background(), c, auth.ProxyInventory{}))
	},
	"ProxyAuthorizeKube": func(f *matrixFixture, c auth.Caller) outcome {
		// Past the gate, the user's request is decided (and refused: no
		// role of theirs allows the cluster).
		_, err := f.a.ProxyAuthorizeKube(context.Background(), c, f.callers["access"], auth.KubeCluster{Name: "k"}, policy.KubeResource{Verb: "list", Kind: "pods"})
		if err != nil && strings.Contains(err.Error(), "only the proxy speak for users") {
			return deny
		}
		return all
	},
	"Watch": func(f *matrixFixture, c auth.Caller) outcome {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, _, err := f.a.Watch(ctx, c)
		return gate(err)
	},
	"OpenRecording": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.OpenRecording(context.Background(), c, "no-such-session")
		return gate(err)
	},
	"OpenRecordingAt": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.OpenRecordingAt(context.Background(), c, "no-such-session")
		return gate(err)
	},
	"VerifyRecordings": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.VerifyRecordings(context.Background(), c, nil)
		return gate(err)
	},
	"ListRecordings": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListRecordings(context.Background(), c, auth.RecordingFilter{})
		return gate(err)
	},
	"SearchRecordings": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.SearchRecordings(context.Background(), c, "text", 1)
		return gate(err)
	},
	"AppendRecording": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.AppendRecording(context.Background(), c, recording.Meta{SessionID: "not a session id"}, 0, nil)
		return gate(err)
	},
	"AppendLocalRecording": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.AppendLocalRecording(context.Background(), c, recording.Meta{SessionID: "not a session id"}, 0, nil)
		return gate(err)
	},
	"CompleteRecording": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.CompleteRecording(context.Background(), c, "no-such-session", 0, "", false))
	},
	"CreateAccessRequest": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.CreateAccessRequest(context.Background(), c, auth.CreateAccessRequest{}) // no roles: invalid
		return gate(err)
	},
	"ListAccessRequests": func(f *matrixFixture, c auth.Caller) outcome {
		rs, err := f.a.ListAccessRequests(context.Background(), c)
		sawOthers := false
		for _, r := range rs {
			sawOthers = sawOthers || r.ID == f.others
		}
		return share(err, sawOthers)
	},
	"GetAccessRequest": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.GetAccessRequest(context.Background(), c, f.others)
		if errors.Is(err, storage.ErrNotFound) {
			return own
		}
		return gate(err)
	},
	"ReviewAccessRequest": func(f *matrixFixture, c auth.Caller) outcome {
		// Which requests a user may review is the request's (its roles'
		// review_requests); every user may ask.
		_, err := f.a.ReviewAccessRequest(context.Background(), c, "no-such-request", false, "")
		return gate(err)
	},
	"RevokeAccessRequest": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.RevokeAccessRequest(context.Background(), c, f.putRequest("someone-else"), "")
		if err == nil {
			return all
		}
		if !errors.Is(err, auth.ErrAccessDenied) {
			f.t.Fatalf("revoke as %s: %v", c.Name(), err)
		}
		if c.Kind != auth.KindUser {
			return deny
		}
		_, err = f.a.RevokeAccessRequest(context.Background(), c, f.putRequest(c.User), "")
		if err == nil {
			return own
		}
		return deny
	},
	"UseAccessRequest": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.UseAccessRequest(context.Background(), c, "no-such-request", "", "")
		return gate(err)
	},
	"SuggestRoles": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.SuggestRoles(context.Background(), c, "root", "no-such-node")
		return gate(err)
	},
	"UpsertRole": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.UpsertRole(context.Background(), c, &policy.Role{Kind: policy.KindRole, Metadata: policy.Metadata{Name: "bad name"}}))
	},
	"GetRole": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.GetRole(context.Background(), c, policy.RoleAccess)
		return gate(err)
	},
	"ListRoles": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListRoles(context.Background(), c)
		return gate(err)
	},
	"DeleteRole": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.DeleteRole(context.Background(), c, "no-such-role"))
	},
	"UpsertConnector": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.UpsertConnector(context.Background(), c, &auth.OIDCConnector{Kind: "oidc", Metadata: wire.ConnectorMetadata{Name: "bad name"}}))
	},
	"GetConnector": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.GetConnector(context.Background(), c, "no-such-connector")
		return gate(err)
	},
	"ListConnectors": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListConnectors(context.Background(), c)
		return gate(err)
	},
	"DeleteConnector": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.DeleteConnector(context.Background(), c, "no-such-connector"))
	},
	"UpsertSAMLConnector": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.UpsertSAMLConnector(context.Background(), c, &auth.SAMLConnector{Kind: "saml", Metadata: wire.ConnectorMetadata{Name: "bad name"}}))
	},
	"GetSAMLConnector": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.GetSAMLConnector(context.Background(), c, "no-such-connector")
		return gate(err)
	},
	"ListSAMLConnectors": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListSAMLConnectors(context.Background(), c)
		return gate(err)
	},
	"DeleteSAMLConnector": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.DeleteSAMLConnector(context.Background(), c, "no-such-connector"))
	},
	"ListSessions": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListSessions(context.Background(), c)
		return gate(err)
	},
	"CreateUser": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.CreateUser(context.Background(), c, auth.CreateUserRequest{Name: ""})
		return gate(err)
	},
	"ListUsers": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ListUsers(context.Background(), c)
		return gate(err)
	},
	"DeleteUser": func(f *matrixFixture, c auth.Caller) outcome {
		return gate(f.a.DeleteUser(context.Background(), c, "no-such-user"))
	},
	"UpdateUser": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.UpdateUser(context.Background(), c, "no-such-user", auth.UpdateUserRequest{Roles: []string{policy.RoleAccess}})
		return gate(err)
	},
	"ResetUser": func(f *matrixFixture, c auth.Caller) outcome {
		_, err := f.a.ResetUser(context.Background(), c, "no-such-user")
		return gate(err)
	},
}

// share is the outcome of a call that succeeds on a share: all when it
// reached what is not the caller's.
func share(err error, whole bool) outcome {
	switch {
	case err != nil:
		return gate(err)
	case whole:
		return all
	}
	return own
}

// emitOutcome tries a node's event type and the proxy's: own when exactly
// one is accepted.
func emitOutcome(emit func(audit.Event) error) outcome {
	accepted := 0
	for _, ev := range []audit.Event{
		{Event: audit.PortForward, User: "dev", Success: true},
		{Event: audit.ProxyDisconnect, User: "dev", Success: true},
	} {
		if err := emit(ev); err == nil {
			accepted++
		}
	}
	switch accepted {
	case 0:
		return deny
	case 1:
		return own
	}
	return all
}

// callerMethods are the exported methods of *auth.Server that take a
// Caller.
func callerMethods() []string {
	callerType := reflect.TypeFor[auth.Caller]()
	var out []string
	st := reflect.TypeFor[*auth.Server]()
	for i := range st.NumMethod() {
		m := st.Method(i)
		for j := range m.Type.NumIn() {
			if m.Type.In(j) == callerType {
				out = append(out, m.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestPermissionMatrix pins what a user with no roles, users with the
// built-in roles, a node, the proxy and the local admin each get from
// every method of auth.Server that takes a Caller.
func TestPermissionMatrix(t *testing.T) {
	methods := callerMethods()
	for _, m := range methods {
		if _, ok := matrix[m]; !ok {
			t.Errorf("auth.Server.%s takes a Caller but is not in the permission matrix: add what each caller gets", m)
		}
		if _, ok := probes[m]; !ok {
			t.Errorf("auth.Server.%s has no probe", m)
		}
	}
	for m := range matrix {
		if _, ok := probes[m]; !ok {
			t.Errorf("the matrix names %s, which is not a method of auth.Server taking a Caller", m)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	f := newMatrixFixture(t)
	for _, m := range methods {
		for i, col := range matrixCallers {
			if got, want := probes[m](f, f.callers[col]), matrix[m][i]; got != want {
				t.Errorf("%s as %s: %s, want %s", m, col, got, want)
			}
		}
	}
}

// TestSearchRecordingsNeedsRead: searching recordings reads what they
// hold, so it needs recording read as well as list; a role that may only
// list recordings cannot search their contents.
func TestSearchRecordingsNeedsRead(t *testing.T) {
	f := newMatrixFixture(t)
	ctx := context.Background()
	roles, err := policy.ParseRoles([]byte(`
kind: role
metadata: {name: lister}
spec:
  allow:
    rules: [{resources: [recording], verbs: [list]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.a.UpsertRole(ctx, auth.AdminCaller(), roles[0]); err != nil {
		t.Fatal(err)
	}
	f.signup("lister", []string{"lister"}, nil)
	c, err := f.a.CurrentCaller(ctx, auth.Caller{Kind: auth.KindUser, User: "lister", Roles: []string{"lister"}, Issued: f.clock.Now()}, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	// The role reaches auth's cache through a watch: wait until it lists.
	deadline := patience.Deadline(t)
	for {
		_, err := f.a.ListRecordings(ctx, c, auth.RecordingFilter{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lister role never allowed listing recordings: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f.a.SearchRecordings(ctx, c, "secret", 10); !errors.Is(err, auth.ErrAccessDenied) {
		t.Fatalf("a role that may only list recordings searched their contents: %v", err)
	}
}

// agentlessGate tells the refusal of the operation itself from a refusal
// of what it named.
func agentlessGate(err error) outcome {
	if err != nil && strings.Contains(err.Error(), "connect to agentless servers for users") {
		return deny
	}
	return all
}
