package nodeagent

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/node"
)

// TestRoleWatchReconnectJittered: while auth is unreachable, the node's
// watch of roles and locks reconnects with exponential backoff (250 ms
// doubling to 10 s), each wait drawn from [step/2, step] so that a fleet
// cut off by the same restart does not reconnect in lockstep.
func TestRoleWatchReconnectJittered(t *testing.T) {
	// A port nothing listens on: every watch fails at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := api.NewClient(api.ClientConfig{Addr: addr, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const steps = 12
	w := newRoleWatcher(c, slog.New(slog.DiscardHandler), node.NewAccess(node.AccessConfig{NodeName: "n"}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	w.sleep = func(_ context.Context, d time.Duration) bool {
		waits = append(waits, d)
		if len(waits) == steps {
			cancel()
			return false
		}
		return true
	}
	w.run(ctx)
	if len(waits) != steps {
		t.Fatalf("%d reconnect waits, want %d", len(waits), steps)
	}
	step, exact := 250*time.Millisecond, 0
	for i, d := range waits {
		if d < step/2 || d > step {
			t.Errorf("wait %d: %s, want within [%s, %s]", i, d, step/2, step)
		}
		if d == step {
			exact++
		}
		step = min(step*2, 10*time.Second)
	}
	if exact == steps {
		t.Fatalf("every wait was exactly its backoff step (%v): no jitter", waits)
	}
	// Two nodes cut off together do not wait alike.
	if a, b := jitter(time.Second), jitter(time.Second); a == b && jitter(time.Second) == a {
		t.Fatalf("jitter(1s) returned %s three times", a)
	}
}
