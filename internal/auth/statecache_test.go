package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage"
)

// countingBackend counts reads of one key; while gate is held, it holds
// back watch events (a slow watch).
type countingBackend struct {
	storage.Backend
	key   string
	reads atomic.Int64
	gate  sync.Mutex
}

func (b *countingBackend) Watch(ctx context.Context, prefix string, more ...string) (<-chan storage.Event, error) {
	in, err := b.Backend.Watch(ctx, prefix, more...)
	if err != nil {
		return nil, err
	}
	out := make(chan storage.Event, 1024)
	go func() {
		defer close(out)
		for ev := range in {
			// The test holds the gate to hold the watch back.
			b.gate.Lock()
			out <- ev
			b.gate.Unlock()
		}
	}()
	return out, nil
}

func (b *countingBackend) Get(ctx context.Context, key string) (storage.Item, error) {
	if key == b.key {
		b.reads.Add(1)
	}
	return b.Backend.Get(ctx, key)
}

// TestCurrentCallerCache: the current-state check reads the user record
// from memory when nothing changed, and still answers with the current
// state: a change made through this auth server counts for the very next
// check (no wait), a change another auth server made on the same storage
// as soon as the watch delivers it, and a lock at once.
func TestCurrentCallerCache(t *testing.T) {
	var cb *countingBackend
	f := newFixture(t, func(c *auth.Config) {
		cb = &countingBackend{Backend: c.Backend, key: "/users/dev"}
		c.Backend = cb
	})
	a, ctx := f.a, context.Background()
	secret := f.signup("dev", []string{"access"}, []string{"dev"})
	resp, err := a.Login(ctx, auth.LoginRequest{User: "dev", Password: "a good long password", OTP: f.code(secret), PublicKey: pubKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	dev := callerOf(t, resp.TLSCert)
	check := func() (auth.Caller, error) { return a.CurrentCaller(ctx, dev, "test", "") }
	if _, err := check(); err != nil {
		t.Fatal(err)
	}
	before := cb.reads.Load()
	for range 100 {
		if _, err := check(); err != nil {
			t.Fatal(err)
		}
	}
	if n := cb.reads.Load() - before; n > 1 {
		t.Fatalf("100 checks of an unchanged user read the record %d times", n)
	}

	// A role added through this server: the next check has it, without
	// waiting for the watch.
	cb.gate.Lock()
	release := sync.OnceFunc(cb.gate.Unlock)
	t.Cleanup(release) // (before the fixture's: auth's watches end)
	if _, err := a.UpdateUser(ctx, auth.AdminCaller(), "dev", auth.UpdateUserRequest{Roles: []string{"access", "auditor"}}); err != nil {
		t.Fatal(err)
	}
	cur, err := check()
	if err != nil || !slices.Contains(cur.Roles, "auditor") {
		t.Fatalf("the check right after a role was added: roles %v, %v", cur.Roles, err)
	}
	release()

	// Another auth server on the same storage (a write that does not go
	// through this one): the watch brings it.
	it, err := f.b.Get(ctx, "/users/dev")
	if err != nil {
		t.Fatal(err)
	}
	var u map[string]any
	if err := json.Unmarshal(it.Value, &u); err != nil {
		t.Fatal(err)
	}
	u["roles"] = []string{"access", "auditor", "admin"}
	it.Value, _ = json.Marshal(u)
	if _, err := f.b.Put(ctx, it); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		cur, err := check()
		if err == nil && slices.Contains(cur.Roles, "admin") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a change by another auth server was not seen in 5 s: roles %v, %v", cur.Roles, err)
		}
	}

	// A lock: the next check refuses.
	if _, err := a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "dev"}, Message: "stop"}); err != nil {
		t.Fatal(err)
	}
	if _, err := check(); !errors.Is(err, auth.ErrAccessDenied) || !strings.Contains(err.Error(), "stop") {
		t.Fatalf("the check right after a lock: %v", err)
	}
}
