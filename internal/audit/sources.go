package audit

// Names of events that services other than auth hand to it: nodes (over the
// API, or in auth's process) and the proxy. Which kind of identity may send
// which event is auth's one list (emittable, internal/auth/ingest.go); auth
// records every other event itself.
const (
	NodeStart         = "node.start"
	SessionJobsKilled = "session.jobs_killed"
	ProxyDisconnect   = "proxy.disconnect"
)

// Names of events auth records about the guarding of credentials and of
// the log itself.
const (
	// LoginThrottled: a login or signup attempt was refused because of
	// earlier failures from the same address (or address and account).
	LoginThrottled = "user.login_throttled"
	// EventRefused: an identity handed auth events it may not emit; none
	// of them was stored.
	EventRefused = "audit.event_refused"
)
