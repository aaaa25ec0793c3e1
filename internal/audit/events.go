package audit

import "slices"

// Every audit event name and code is here, and only here: the constants
// below, and Types, the list of them with who records each. Never rename
// one: SIEM rules depend on them. docs/audit-events.md lists exactly these
// (TestDocsListEveryEventType), and no other package spells an event name
// out (TestNoEventNamesElsewhere).

// Events auth records.
const (
	UserLogin  = "user.login"
	UserLogout = "user.logout" // a sign-out of the web UI
	// WebTerminalResume: a web terminal's page came back after its socket
	// dropped, and got its session again (or was refused).
	WebTerminalResume = "web.terminal_resume"
	// LoginThrottled: a login or signup attempt was refused because of
	// earlier failures from the same address (or address and account).
	LoginThrottled = "user.login_throttled"
	UserCreate     = "user.create"
	UserDelete     = "user.delete"
	UserReset      = "user.reset"
	UserUpdate     = "user.update"
	UserSignup     = "user.signup"
	// MFAAdd, MFADelete: a user added or removed an MFA device (TOTP or
	// WebAuthn), by name. MFARecoveryCodes: a new set of recovery codes
	// (never the codes). MFAVerify: a fresh MFA check for a sensitive
	// operation. MFACounterRegression: a WebAuthn credential signed with a
	// counter at or below the one last seen (a cloned key?): refused.
	MFAAdd               = "mfa.add"
	MFADelete            = "mfa.delete"
	MFARecoveryCodes     = "mfa.recovery_codes"
	MFAVerify            = "mfa.verify"
	MFACounterRegression = "mfa.counter_regression"
	CertIssued           = "cert.issued"
	// CertRefused: auth refused a certificate still within its validity,
	// because the state it was issued from changed: its user was removed,
	// reset or lost a role, its access request was revoked or expired, or
	// a lock matches.
	CertRefused = "cert.refused"
	RoleApply   = "role.apply"
	RoleDelete  = "role.delete"
	// ConnectorApply, ConnectorDelete: an SSO connector was applied or
	// removed (never with its secret).
	ConnectorApply  = "connector.apply"
	ConnectorDelete = "connector.delete"
	TokenCreate     = "token.create"
	TokenUse        = "token.use"
	NodeJoin        = "node.join"
	// BotCreate, BotDelete: a bot (a machine user) was added or removed.
	BotCreate = "bot.create"
	BotDelete = "bot.delete"
	// BotJoin: a bot joined with a join token (secret or OIDC) and got its
	// renewable identity.
	BotJoin = "bot.join"
	// BotGenerationMismatch: a bot identity renewed with an older
	// generation than the current one (a copied identity): the bot is
	// locked.
	BotGenerationMismatch = "bot.generation_mismatch"
	// NodeDelete: an agentless server was removed (warden nodes rm).
	NodeDelete  = "node.delete"
	LockCreated = "lock.created"
	LockDeleted = "lock.deleted"
	// ClusterSettingsUpdate: an admin changed a cluster setting kept in
	// storage (warden cluster settings).
	ClusterSettingsUpdate = "cluster.settings_update"
	// RecordingComplete: a recording was closed; its length and sha256 are
	// what reading the recording checks.
	RecordingComplete = "recording.complete"
	// RecordingRefused: a node uploaded a recording for a session auth has
	// no record of it starting.
	RecordingRefused = "recording.refused"
	// RecordingAltered: a recording read or verified does not match what
	// was recorded when it completed, or is missing.
	RecordingAltered = "recording.altered"
	// RecordingRetention: recordings were deleted by age.
	RecordingRetention = "recording.retention"
	RequestCreate      = "access_request.create"
	RequestReview      = "access_request.review"
	RequestApproved    = "access_request.approved"
	RequestDenied      = "access_request.denied"
	RequestExpired     = "access_request.expired"
	RequestUsed        = "access_request.used"
	RequestRevoked     = "access_request.revoked"
	// NotificationDelivery: a webhook delivery of an access request
	// notification.
	NotificationDelivery = "notification.delivery"
	// EventRefused: an identity handed auth events it may not emit; none
	// of them was stored.
	EventRefused = "audit.event_refused"
	// Retention records that events older than a cutoff were deleted; its
	// fields name the checkpoint the hash chain continues from.
	Retention = "audit.retention"
	// Checkpoint is a signed checkpoint of the chain (fields: signed_seq,
	// signed_hash, key_id, signature, interval).
	Checkpoint = "audit.checkpoint"
	// ChainBroken is recorded when auth, about to sign a checkpoint, finds
	// that the events since its previous one no longer chain to it.
	ChainBroken = "audit.chain_broken"
)

// Events nodes record and hand to auth.
const (
	NodeStart    = "node.start"
	AuthAttempt  = "auth.attempt"
	SessionStart = "session.start"
	SessionEnd   = "session.end"
	SessionJoin  = "session.join"
	SessionLeave = "session.leave"
	// SessionJobsKilled: revoking access killed the jobs a user's earlier
	// session left running.
	SessionJobsKilled = "session.jobs_killed"
	Exec              = "exec"
	SFTP              = "sftp"
	PortForward       = "port_forward"
)

// Events the proxy records and hands to auth.
const (
	// ProxyDisconnect: the proxy cut a relayed connection.
	ProxyDisconnect = "proxy.disconnect"
	// KubeRequest: a Kubernetes API request through the proxy, allowed
	// or refused.
	KubeRequest = "kube.request"
)

// Event codes: stable codes some events carry besides their name. Codes
// are auth's: it clears the code of every event another service hands it.
const (
	CodeLoginSuccess = "L001I"
	CodeLoginFailure = "L001F"
)

// Who records an event type: auth itself, or a service that hands its
// events to auth.
const (
	ByAuth  = "auth"
	ByNode  = "node"
	ByProxy = "proxy"
)

// Type is one type of audit event.
type Type struct {
	Name string
	// Emitter records it: ByAuth, ByNode or ByProxy.
	Emitter string
	// Codes it may carry.
	Codes []string
}

var types = []Type{
	{Name: UserLogin, Emitter: ByAuth, Codes: []string{CodeLoginSuccess, CodeLoginFailure}},
	{Name: UserLogout, Emitter: ByAuth},
	{Name: LoginThrottled, Emitter: ByAuth},
	{Name: UserCreate, Emitter: ByAuth},
	{Name: UserDelete, Emitter: ByAuth},
	{Name: UserReset, Emitter: ByAuth},
	{Name: UserUpdate, Emitter: ByAuth},
	{Name: UserSignup, Emitter: ByAuth},
	{Name: MFAAdd, Emitter: ByAuth},
	{Name: MFADelete, Emitter: ByAuth},
	{Name: MFARecoveryCodes, Emitter: ByAuth},
	{Name: MFAVerify, Emitter: ByAuth},
	{Name: MFACounterRegression, Emitter: ByAuth},
	{Name: CertIssued, Emitter: ByAuth},
	{Name: CertRefused, Emitter: ByAuth},
	{Name: RoleApply, Emitter: ByAuth},
	{Name: RoleDelete, Emitter: ByAuth},
	{Name: ConnectorApply, Emitter: ByAuth},
	{Name: ConnectorDelete, Emitter: ByAuth},
	{Name: TokenCreate, Emitter: ByAuth},
	{Name: TokenUse, Emitter: ByAuth},
	{Name: NodeJoin, Emitter: ByAuth},
	{Name: BotCreate, Emitter: ByAuth},
	{Name: BotDelete, Emitter: ByAuth},
	{Name: BotJoin, Emitter: ByAuth},
	{Name: BotGenerationMismatch, Emitter: ByAuth},
	{Name: NodeDelete, Emitter: ByAuth},
	{Name: NodeStart, Emitter: ByNode},
	{Name: AuthAttempt, Emitter: ByNode},
	{Name: SessionStart, Emitter: ByNode},
	{Name: SessionEnd, Emitter: ByNode},
	{Name: SessionJoin, Emitter: ByNode},
	{Name: SessionLeave, Emitter: ByNode},
	{Name: SessionJobsKilled, Emitter: ByNode},
	{Name: Exec, Emitter: ByNode},
	{Name: SFTP, Emitter: ByNode},
	{Name: PortForward, Emitter: ByNode},
	{Name: ProxyDisconnect, Emitter: ByProxy},
	{Name: KubeRequest, Emitter: ByProxy},
	{Name: RecordingComplete, Emitter: ByAuth},
	{Name: RecordingRefused, Emitter: ByAuth},
	{Name: RecordingAltered, Emitter: ByAuth},
	{Name: RecordingRetention, Emitter: ByAuth},
	{Name: LockCreated, Emitter: ByAuth},
	{Name: LockDeleted, Emitter: ByAuth},
	{Name: WebTerminalResume, Emitter: ByAuth},
	{Name: ClusterSettingsUpdate, Emitter: ByAuth},
	{Name: RequestCreate, Emitter: ByAuth},
	{Name: RequestReview, Emitter: ByAuth},
	{Name: RequestApproved, Emitter: ByAuth},
	{Name: RequestDenied, Emitter: ByAuth},
	{Name: RequestExpired, Emitter: ByAuth},
	{Name: RequestUsed, Emitter: ByAuth},
	{Name: RequestRevoked, Emitter: ByAuth},
	{Name: NotificationDelivery, Emitter: ByAuth},
	{Name: EventRefused, Emitter: ByAuth},
	{Name: Retention, Emitter: ByAuth},
	{Name: Checkpoint, Emitter: ByAuth},
	{Name: ChainBroken, Emitter: ByAuth},
}

// Types returns every audit event type, in the order docs/audit-events.md
// lists them.
func Types() []Type {
	out := slices.Clone(types)
	for i := range out {
		out[i].Codes = slices.Clone(out[i].Codes)
	}
	return out
}

// EmittedBy returns the names of the event types emitter records, in
// order.
func EmittedBy(emitter string) []string {
	var out []string
	for _, t := range types {
		if t.Emitter == emitter {
			out = append(out, t.Name)
		}
	}
	return out
}
