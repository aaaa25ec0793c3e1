package proxy

import (
	"crypto/x509"
	"slices"
	"sync"

	"github.com/warden-sh/warden/internal/auth"
)

// kubeCallers remembers what each client certificate says (the caller
// auth.CallerFromTLS decodes from its extensions: a JSON decode of each),
// by certificate: kubectl sends every request of a connection with the
// same parsed certificate, so at a thousand requests a second the decode
// is done once per connection rather than per request. Only what the
// certificate itself says is kept; whether it still counts (the user, their
// roles and requests, locks, expiry) is decided per request by
// CurrentCaller against the current state, as before.
type kubeCallers struct {
	mu sync.Mutex
	m  map[*x509.Certificate]auth.Caller
}

// kubeCallersMax bounds the cache (its entries hold their certificates).
const kubeCallersMax = 4096

func (k *kubeCallers) get(leaf *x509.Certificate) (auth.Caller, error) {
	k.mu.Lock()
	c, ok := k.m[leaf]
	k.mu.Unlock()
	if ok {
		return cloneCaller(c), nil
	}
	c, err := auth.CallerFromTLS(leaf)
	if err != nil {
		return auth.Caller{}, err
	}
	k.mu.Lock()
	if k.m == nil || len(k.m) >= kubeCallersMax {
		k.m = make(map[*x509.Certificate]auth.Caller)
	}
	k.m[leaf] = cloneCaller(c)
	k.mu.Unlock()
	return c, nil
}

// cloneCaller copies the caller's slices and maps, so that no request
// changes what another sees.
func cloneCaller(c auth.Caller) auth.Caller {
	c.Roles = slices.Clone(c.Roles)
	c.RequestIDs = slices.Clone(c.RequestIDs)
	if c.Traits != nil {
		t := make(map[string][]string, len(c.Traits))
		for k, v := range c.Traits {
			t[k] = slices.Clone(v)
		}
		c.Traits = t
	}
	return c
}
