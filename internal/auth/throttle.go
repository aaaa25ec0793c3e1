package auth

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/identity"
)

// Default limits on failed credential checks (logins, signups); see
// Config.SourceLimit and Config.AccountLimit.
var (
	// DefaultSourceLimit: 20 failures from one address, then one every 30 s.
	DefaultSourceLimit = identity.ThrottleLimit{Burst: 20, Every: 30 * time.Second, MaxWait: 15 * time.Minute}
	// DefaultAccountLimit: 5 failures from one address for one account
	// name (known or not), then one a minute; a success there clears them.
	DefaultAccountLimit = identity.ThrottleLimit{Burst: 5, Every: time.Minute, MaxWait: 15 * time.Minute}
)

// sourceKey is the throttle key of a client address: an IPv4 address, or
// the /64 of an IPv6 one (a single host is usually given a whole /64).
func sourceKey(remote string) string {
	ip, err := netip.ParseAddr(remote)
	if err != nil {
		ap, perr := netip.ParseAddrPort(remote)
		if perr != nil {
			return "src " + remote
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "src " + p.String()
	}
	return "src " + ip.String()
}

// beginAttempt starts a credential check from remote (for user, if the
// request names one), or refuses it with an *identity.ThrottledError. The
// first refusal of a burst is audited (user.login_throttled), not every
// one, so a flood cannot flood the log.
func (s *Server) beginAttempt(ctx context.Context, endpoint, remote, user string) (*identity.Attempt, error) {
	src := identity.ThrottleKey{Name: sourceKey(remote), Limit: s.cfg.SourceLimit}
	keys := []identity.ThrottleKey{src}
	if user != "" {
		keys = append(keys, identity.ThrottleKey{Name: src.Name + " user " + user, Limit: s.cfg.AccountLimit, ClearOnSuccess: true})
	}
	a, err := s.throttle.Begin(keys...)
	var te *identity.ThrottledError
	if errors.As(err, &te) && te.First {
		scope := "address"
		if te.Key != src.Name {
			scope = "address+account"
		}
		s.emit(ctx, audit.Event{Event: audit.LoginThrottled, User: user, RemoteAddr: remote, Success: false, Error: te.Error(),
			Fields: map[string]any{"endpoint": endpoint, "scope": scope, "retry_after": te.RetryAfter.String()}})
	}
	return a, err
}
