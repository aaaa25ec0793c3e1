package nodeagent

import (
	"context"
	"fmt"
	"time"

	"github.com/warden-sh/warden/internal/node"
	"github.com/warden-sh/warden/internal/policy"
)

// reverify re-checks every live connection after a lock or role change:
// authorization continues for the whole session, not just at its start.
func (a *Agent) reverify() {
	if !a.ready.Load() {
		return
	}
	now := time.Now()
	a.srv.Terminate(func(ci node.ConnInfo) (string, string) {
		id, err := connIdentity(ci)
		if err != nil {
			return "", ""
		}
		login := ci.Login
		if ci.JoinOnly {
			login = ""
		}
		sub := a.authz.subject(id, login)
		sub.Sessions = ci.SessionIDs
		if l := a.roles.locks.Check(sub, now); l != nil {
			return "locked", l.UserMessage()
		}
		if ci.JoinOnly {
			return "", "" // joins are checked when made; locks end them
		}
		roles, ok := a.roles.get(id.Roles)
		if !ok {
			return "", ""
		}
		d := a.authz.decide(id, roles, ci.Login)
		if !d.Allowed {
			return "access changed", "your access changed and no longer allows this session: " + d.Reason
		}
		return "", ""
	})
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
		stale := a.roles.staleness()
		if !a.ready.Load() || stale <= a.authz.maxStale {
			continue
		}
		// Not a revocation: access could not be verified. The sessions
		// end like a hangup; detached jobs live on.
		a.srv.Disconnect(func(ci node.ConnInfo) (string, string) {
			id, err := connIdentity(ci)
			if err != nil {
				return "", ""
			}
			roles, _ := a.roles.get(id.Roles)
			if policy.MergeOptions(roles).LockMode != policy.LockStrict {
				return "", ""
			}
			return "lock view stale", fmt.Sprintf("this node lost contact with auth %s ago and your roles require current lock checks (lock_mode strict)", stale.Round(time.Second))
		})
	}
}
