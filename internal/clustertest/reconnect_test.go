//go:build integration

package clustertest

import (
	"context"
	"io"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/service"
)

// connCounter is a TCP front for the proxy that records when each
// connection (attempt) arrives: what a load balancer in front of the
// proxies sees of a fleet reconnecting.
type connCounter struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	at     []time.Time
	wg     sync.WaitGroup
}

func newConnCounter(t *testing.T, target string) *connCounter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &connCounter{l: l, target: target}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.at = append(c.at, time.Now())
			c.mu.Unlock()
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				defer conn.Close()
				up, err := net.Dial("tcp", c.target)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(up, conn); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				go func() { io.Copy(conn, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return c
}

// since returns the arrival times at or after t.
func (c *connCounter) since(t time.Time) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, a := range c.at {
		if !a.Before(t) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// peak is the most arrivals within any window of length w.
func peak(at []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range at {
		for at[i].Sub(at[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// TestThousandNodesReconnect: 1,000 simulated nodes (real identities and
// SSH tunnels) behind a TCP front; auth and proxy restart, and the nodes
// come back by themselves with jittered exponential backoff (200 ms
// doubling to 4 s, each wait drawn in [b/2, b]). Reported: how long until
// all are back, how many connection attempts that took, and the peak
// attempt rate (per second and per 100 ms) the front saw: a fleet that
// retried in lockstep would show all its attempts in the same instants.
func TestThousandNodesReconnect(t *testing.T) {
	const n = 1000
	dir := t.TempDir()
	c := New(t, Options{NoNode: true, DataDir: dir})
	addr := c.ProxyAddr()
	front := newConnCounter(t, addr)
	sims := SimulateNodes(t, c, n, func(int) map[string]string { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, s := range sims {
		s.proxy = front.l.Addr().String()
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
	}
	c.WaitForNodes(n)

	restart := time.Now()
	c.Proc.Close()
	c2 := New(t, Options{NoNode: true, DataDir: dir, Proxy: service.ProxyConfig{Listen: addr}})
	up := time.Since(restart)
	c2.WaitForNodes(n)
	back := time.Since(restart)
	at := front.since(restart)
	t.Logf("%d nodes back %v after the restart began (auth and proxy were up again after %v); %d connection attempts; peak %d attempts/s, %d per 100 ms",
		n, back.Round(time.Millisecond), up.Round(time.Millisecond), len(at), peak(at, time.Second), peak(at, 100*time.Millisecond))
	if len(at) < n {
		t.Fatalf("%d connections after the restart for %d nodes back: the front did not see them", len(at), n)
	}
}
