package auth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/warden-sh/warden/internal/policy"
)

// operations is what every exported method of Server that takes a Caller
// requires of its caller: the one table of who may do what. Each such
// method starts by consulting its entry, by its own name:
// s.authorize(c, "ListUsers"), or s.authorizeShare for an operation that
// some callers may do on their own share only. TestOperationsTable fails on
// a method missing here or not starting so; TestPermissionMatrix pins what
// each kind of caller gets from each method.
//
// What a rule cannot say, because it depends on the object, stays with the
// object: which requests a user may review (their roles' review_requests,
// access.AddReview) or use (their own approved ones, access.Usable), and
// which recordings a node may upload (its own sessions, recording.Store).
var operations = map[string]rule{
	// Users, roles, join tokens, locks: the admin, or a user whose roles allow the verb.
	"CreateUser":  {kinds: kinds(KindAdmin), perms: perms("user create")},
	"ListUsers":   {kinds: kinds(KindAdmin), perms: perms("user list")},
	"UpdateUser":  {kinds: kinds(KindAdmin), perms: perms("user update")},
	"ResetUser":   {kinds: kinds(KindAdmin), perms: perms("user update")},
	"DeleteUser":  {kinds: kinds(KindAdmin), perms: perms("user delete")},
	"UpsertRole":  {kinds: kinds(KindAdmin), perms: perms("role update")},
	"GetRole":     {kinds: kinds(KindAdmin), perms: perms("role read")},
	"ListRoles":   {kinds: kinds(KindAdmin, KindNode), perms: perms("role list")},
	"DeleteRole":  {kinds: kinds(KindAdmin), perms: perms("role delete")},
	"CreateToken": {kinds: kinds(KindAdmin), perms: perms("token create")},
	"ListTokens":  {kinds: kinds(KindAdmin), perms: perms("token list")},
	"DeleteToken": {kinds: kinds(KindAdmin), perms: perms("token delete")},
	// Bots are users: managing them takes the user verbs.
	"CreateBot":  {kinds: kinds(KindAdmin), perms: perms("user create", "token create")},
	"ListBots":   {kinds: kinds(KindAdmin), perms: perms("user list")},
	"DeleteBot":  {kinds: kinds(KindAdmin), perms: perms("user delete")},
	"CreateLock": {kinds: kinds(KindAdmin), perms: perms("lock create")},
	"ListLocks":  {kinds: kinds(KindAdmin, KindNode), perms: perms("lock list")},
	"DeleteLock": {kinds: kinds(KindAdmin), perms: perms("lock delete")},
	// SSO connectors (they hold no secret, only where auth reads it).
	"UpsertConnector":     {kinds: kinds(KindAdmin), perms: perms("connector update")},
	"GetConnector":        {kinds: kinds(KindAdmin), perms: perms("connector read")},
	"ListConnectors":      {kinds: kinds(KindAdmin), perms: perms("connector list")},
	"DeleteConnector":     {kinds: kinds(KindAdmin), perms: perms("connector delete")},
	"UpsertSAMLConnector": {kinds: kinds(KindAdmin), perms: perms("connector update")},
	"GetSAMLConnector":    {kinds: kinds(KindAdmin), perms: perms("connector read")},
	"ListSAMLConnectors":  {kinds: kinds(KindAdmin), perms: perms("connector list")},
	"DeleteSAMLConnector": {kinds: kinds(KindAdmin), perms: perms("connector delete")},
	// The cluster health page: read-only facts about auth, nodes, CAs, storage and the audit chain.
	"ClusterHealth": {kinds: kinds(KindAdmin), perms: perms("cluster read")},
	// Cluster settings kept in storage (settings.go).
	"ClusterSettings":       {kinds: kinds(KindAdmin), perms: perms("cluster read")},
	"UpdateClusterSettings": {kinds: kinds(KindAdmin), perms: perms("cluster update")},

	// The audit log, sessions, recordings.
	"SearchAudit":      {kinds: kinds(KindAdmin), perms: perms("audit list")},
	"SubscribeAudit":   {kinds: kinds(KindAdmin), perms: perms("audit list")},
	"VerifyAudit":      {kinds: kinds(KindAdmin), perms: perms("audit read")},
	"ExportAuditKey":   {kinds: kinds(KindAdmin), perms: perms("audit read")},
	"ListSessions":     {kinds: kinds(KindAdmin), perms: perms("session list")},
	"ListRecordings":   {kinds: kinds(KindAdmin), perms: perms("recording list")},
	"OpenRecording":    {kinds: kinds(KindAdmin), perms: perms("recording read")},
	"OpenRecordingAt":  {kinds: kinds(KindAdmin), perms: perms("recording read")},
	"VerifyRecordings": {kinds: kinds(KindAdmin), perms: perms("recording read")},
	// A search reads what the recordings hold.
	"SearchRecordings": {kinds: kinds(KindAdmin), perms: perms("recording list", "recording read")},

	// Access requests.
	"CreateAccessRequest": {kinds: kinds(KindUser), does: "request access"},
	"ListAccessRequests": {kinds: kinds(KindAdmin), perms: perms("access_request list"),
		own: kinds(KindUser), share: "its own requests and those its roles may review", does: "list access requests"},
	"GetAccessRequest": {kinds: kinds(KindAdmin), perms: perms("access_request list"),
		own: kinds(KindUser), share: "its own requests and those its roles may review", does: "read access requests"},
	"ReviewAccessRequest": {kinds: kinds(KindUser), does: "review access requests"},
	"RevokeAccessRequest": {kinds: kinds(KindAdmin), perms: perms("access_request update"),
		own: kinds(KindUser), share: "its own requests", does: "revoke access requests"},
	"UseAccessRequest": {kinds: kinds(KindUser), does: "use access requests"},
	"SuggestRoles":     {kinds: kinds(KindUser), does: "get role suggestions"},

	// Nodes.
	"ListNodes": {kinds: kinds(KindAdmin), own: kinds(KindUser), share: "the nodes its roles allow", does: "list nodes"},
	"Watch":     {kinds: kinds(KindAdmin, KindNode, KindProxy), does: "watch roles and locks"},
	// A proxy running apart from auth (proxies.go): its own certificates
	// and inventory, and the checks it makes for the users whose
	// certificates it verified.
	"RenewProxyCerts":   {kinds: kinds(KindProxy), does: "renew proxy certificates"},
	"IssueProxyWebCert": {kinds: kinds(KindProxy), does: "renew proxy certificates"},
	// The passkey sign-in of its web UI, for a browser (proxyweb.go).
	"ProxyBeginPasskeyLogin":        {kinds: kinds(KindProxy), does: "sign browsers in"},
	"ProxyFinishPasskeyLogin":       {kinds: kinds(KindProxy), does: "sign browsers in"},
	"ProxyFinishPasskeyHandoff":     {kinds: kinds(KindProxy), does: "sign browsers in"},
	"ProxyBeginHandoffMFAChallenge": {kinds: kinds(KindProxy), does: "check browsers' passkeys"},
	"ProxyFinishMFAHandoff":         {kinds: kinds(KindProxy), does: "check browsers' passkeys"},
	"ProxyBeginEnrolPasskey":        {kinds: kinds(KindProxy), does: "sign browsers in"},
	"ProxyFinishEnrolPasskey":       {kinds: kinds(KindProxy), does: "sign browsers in"},
	"ProxyCheckUser":                {kinds: kinds(KindProxy), does: "speak for users"},
	"ProxyNodeRegistration":         {kinds: kinds(KindProxy), does: "serve node tunnels"},
	"ProxySpendSessionCert":         {kinds: kinds(KindProxy), does: "speak for users"},
	"PublishProxyInventory":         {kinds: kinds(KindProxy), does: "serve node tunnels"},
	"ProxyAuthorizeKube":            {kinds: kinds(KindProxy), does: "speak for users"},
	// Proxy peering of a proxy running apart (peering.go).
	"ProxyPeerPut":       {kinds: kinds(KindProxy), does: "peer with proxies"},
	"ProxyPeerDelete":    {kinds: kinds(KindProxy), does: "peer with proxies"},
	"ProxyPeerList":      {kinds: kinds(KindProxy), does: "peer with proxies"},
	"ProxyPeerWatch":     {kinds: kinds(KindProxy), does: "peer with proxies"},
	"IssueProxyPeerCert": {kinds: kinds(KindProxy), does: "peer with proxies"},
	// Agentless servers (docs/agentless.md): registering them and signing
	// their sshd host keys is node administration; the KRL names locked
	// users. Only the proxy decides and connects on a user's behalf.
	"SignHostCert":        {kinds: kinds(KindAdmin), perms: perms("node create")},
	"UpsertAgentlessNode": {kinds: kinds(KindAdmin), perms: perms("node create")},
	"DeleteAgentlessNode": {kinds: kinds(KindAdmin), perms: perms("node delete")},
	"ListAgentlessNodes":  {kinds: kinds(KindAdmin), perms: perms("node list")},
	"AuthorizeAgentless":  {kinds: kinds(KindProxy), does: "connect to agentless servers for users"},
	"IssueAgentlessCert":  {kinds: kinds(KindProxy), does: "connect to agentless servers for users"},
	// The same through a proxy running apart (proxyagentless.go).
	"ProxyListAgentless":      {kinds: kinds(KindProxy), does: "connect to agentless servers for users"},
	"ProxyAuthorizeAgentless": {kinds: kinds(KindProxy), does: "connect to agentless servers for users"},
	"ProxyIssueAgentlessCert": {kinds: kinds(KindProxy), does: "connect to agentless servers for users"},
	"ProxyAgentlessHostCert":  {kinds: kinds(KindProxy), does: "connect to agentless servers for users"},
	"ProxyAgentlessCaller":    {kinds: kinds(KindProxy), does: "connect to agentless servers for users"},
	// The KRL: an agentless server fetches its own (the method checks the
	// node identity is one, from warden sign --host).
	"KRL": {kinds: kinds(KindAdmin), perms: perms("lock list"), own: kinds(KindNode),
		share: "an agentless server's identity (warden sign --krl-identity) only", does: "fetch the KRL"},
	// Kubernetes: clusters listed like nodes; each API request decided for
	// the user making it (the proxy asks with the user's current caller).
	"ListKubeClusters": {kinds: kinds(KindAdmin), own: kinds(KindUser), share: "the clusters its roles allow", does: "list kubernetes clusters"},
	"AuthorizeKube":    {kinds: kinds(KindUser), does: "use kubernetes clusters"},
	// Only a node renews its certificates, uploads and completes its
	// recordings (AppendLocalRecording: the node in auth's process).
	"RenewNodeCerts":       {kinds: kinds(KindNode), does: "renew node certificates"},
	"AppendRecording":      {kinds: kinds(KindNode), does: "upload recordings"},
	"AppendLocalRecording": {kinds: kinds(KindNode), does: "upload recordings"},
	"CompleteRecording":    {kinds: kinds(KindNode), does: "complete recordings"},
	// A bot's own identity renews itself and makes its outputs' certificates
	// (the method refuses every other user certificate).
	"RenewBotCerts":  {kinds: kinds(KindUser), does: "renew bot certificates"},
	"BotOutputCerts": {kinds: kinds(KindUser), does: "get bot output certificates"},
	// Events: each kind of caller its own event types (emittable; users
	// and admins have none), every use of an Emitter through EmitEvents.
	"EmitEvents": {own: kinds(KindNode, KindProxy, KindUser, KindAdmin), share: "its own event types (emittable)", does: "emit events"},
	"Emitter":    {via: "EmitEvents"},

	// The caller's own state: the checks of its certificate, its web sign-out.
	"CurrentCaller":           {kinds: kinds(KindUser, KindNode, KindAdmin, KindProxy), does: "call auth"},
	"CheckCaller":             {kinds: kinds(KindUser, KindNode, KindAdmin, KindProxy), does: "call auth"},
	"RecordWebLogout":         {kinds: kinds(KindUser), does: "sign out of the web UI"},
	"RecordWebTerminalResume": {kinds: kinds(KindUser), does: "use the web terminal"},
	"AllowedLogins":           {kinds: kinds(KindUser), does: "have logins"},
	// The caller's own MFA devices and recovery codes (mfa.go).
	"ListMFADevices":          {kinds: kinds(KindUser), does: "have MFA devices"},
	"BeginAddMFADevice":       {kinds: kinds(KindUser), does: "have MFA devices"},
	"FinishAddMFADevice":      {kinds: kinds(KindUser), does: "have MFA devices"},
	"DeleteMFADevice":         {kinds: kinds(KindUser), does: "have MFA devices"},
	"BeginMFAChallenge":       {kinds: kinds(KindUser), does: "have MFA devices"},
	"VerifyMFA":               {kinds: kinds(KindUser), does: "have MFA devices"},
	"SessionMFAStatus":        {kinds: kinds(KindUser), does: "open sessions to nodes"},
	"IssueSessionCert":        {kinds: kinds(KindUser), does: "open sessions to nodes"},
	"RegenerateRecoveryCodes": {kinds: kinds(KindUser), does: "have MFA devices"},
	"BeginMFAHandoff":         {kinds: kinds(KindUser), does: "have MFA devices"},
}

// rule is what one operation requires of its caller.
type rule struct {
	// kinds are the caller kinds that may do all of it.
	kinds []string
	// perms: a user whose current roles allow every one of these may do all
	// of it.
	perms []perm
	// own are the kinds that may, lacking the above, do it on their own
	// share only, which share describes; the method narrows to it.
	own   []string
	share string
	// does says what the operation does, for refusals ("only nodes renew
	// node certificates").
	does string
	// via names the operation that checks every use of what this method
	// returns (it grants nothing itself).
	via string
}

// perm is a verb on a resource, as roles' rules grant them.
type perm struct{ resource, verb string }

func kinds(k ...string) []string { return k }

// perms parses "resource verb" pairs.
func perms(pairs ...string) []perm {
	out := make([]perm, len(pairs))
	for i, p := range pairs {
		resource, verb, _ := strings.Cut(p, " ")
		out[i] = perm{resource: resource, verb: verb}
	}
	return out
}

// authorize is the one check at the top of every method of Server that
// takes a Caller: the operation op's rule in operations. For users it
// relies on c.Roles being current (CurrentCaller). An operation that some
// callers may do on their own share uses authorizeShare.
func (s *Server) authorize(c Caller, op string) error {
	all, err := s.authorizeShare(c, op)
	if err == nil && !all {
		// The method does not narrow to a share: fail closed.
		return denied("operation %s is limited to a share its method does not apply", op)
	}
	return err
}

// authorizeShare is authorize for an operation that some callers may do
// on their own share only: all is false for them, and the method then
// narrows to that share (the rule's share says what it is).
func (s *Server) authorizeShare(c Caller, op string) (all bool, err error) {
	r, ok := operations[op]
	if !ok || r.via != "" {
		return false, denied("operation %s is not in the authorization table", op)
	}
	if slices.Contains(r.kinds, c.Kind) {
		return true, nil
	}
	var permErr error
	if c.Kind == KindUser && len(r.perms) > 0 {
		roles := s.roles.get(c.Roles)
		for _, p := range r.perms {
			if err := policy.CheckResource(roles, p.resource, p.verb); err != nil {
				permErr = fmt.Errorf("%w: %s %s: %v", ErrAccessDenied, p.verb, p.resource, err)
				break
			}
		}
		if permErr == nil {
			return true, nil
		}
	}
	switch {
	case slices.Contains(r.own, c.Kind):
		return false, nil
	case permErr != nil:
		return false, permErr
	case r.does == "" && len(r.perms) > 0:
		return false, denied("%s cannot %s %s", c.Kind, r.perms[0].verb, r.perms[0].resource)
	}
	return false, denied("only %s %s", r.allowed(), r.does)
}

// allowed names the kinds of caller the rule lets in at all: "nodes and
// admins".
func (r rule) allowed() string {
	var names []string
	add := func(kind string) {
		name := map[string]string{KindUser: "users", KindNode: "nodes", KindAdmin: "admins", KindProxy: "the proxy"}[kind]
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, k := range slices.Concat(r.kinds, r.own) {
		add(k)
	}
	if len(r.perms) > 0 {
		add(KindUser)
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
