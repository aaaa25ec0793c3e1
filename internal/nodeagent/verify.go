package nodeagent

import (
	"context"
	"time"
)

// reverify re-checks every live connection after a lock or role change:
// authorization continues for the whole session, not just at its start.
func (a *Agent) reverify() {
	if !a.ready.Load() {
		return
	}
	a.srv.Terminate(a.access.Revoked)
}

// watchStaleness ends sessions whose roles demand lock_mode strict once the
// node's view of the locks is older than allowed.
func (a *Agent) watchStaleness(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stale := a.access.Staleness()
		if !a.ready.Load() || stale <= a.access.MaxStale() {
			continue
		}
		// Not a revocation: access could not be verified. The sessions
		// end like a hangup; detached jobs live on.
		a.srv.Disconnect(a.access.StrictUnverified(stale))
	}
}
