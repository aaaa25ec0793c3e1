package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/clustertest"
)

// raiseNoFile lifts the soft RLIMIT_NOFILE to at least n, and the hard
// limit too when it is lower and the process may (CAP_SYS_RESOURCE).
// Children inherit the hard limit; Go programs raise their soft limit to
// it at start.
func raiseNoFile(tb testing.TB, n uint64) {
	tb.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Max < n {
		want := lim
		want.Max = n
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			tb.Fatalf("RLIMIT_NOFILE hard limit %d < %d needed, and raising it failed: %v", lim.Max, n, err)
		}
		lim.Max = n
	}
	if lim.Cur < n {
		lim.Cur = n
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			tb.Fatalf("raise RLIMIT_NOFILE to %d: %v", n, err)
		}
	}
}

// BenchmarkScale puts WARDEN_BENCH_NODES (default 10,000) simulated nodes,
// each with a real host certificate and a real reverse tunnel, on one proxy
// that runs alone in a `warden start --services auth,proxy` process, then
// measures that process's RSS and `warden ls -o json` over all of them,
// end to end with the real CLI as a user whose role allows every node.
func BenchmarkScale(b *testing.B) {
	freeMemory()
	n := envInt(b, "WARDEN_BENCH_NODES", 10000)
	// One descriptor per tunnel on each side: this process holds the
	// simulated nodes' ends, the warden child the proxy's.
	raiseNoFile(b, uint64(n+2048))
	bin := wardenBinary(b)
	p := startWarden(b, "--services", "auth,proxy")
	idle := p.settledRSS(b)

	start := time.Now()
	sims := clustertest.JoinSimNodes(b, p.Admin, p.ProxyAddr, n, 8, func(i int) map[string]string {
		return map[string]string{"shard": strconv.Itoa(i % 16), "env": []string{"prod", "staging", "dev"}[i%3]}
	})
	joinTime := time.Since(start)
	b.Logf("joined %d nodes in %s (%.0f/s)", n, joinTime.Round(time.Millisecond), float64(n)/joinTime.Seconds())

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	start = time.Now()
	for i, s := range sims {
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
		// Pace the dials a little so the proxy's bound on handshakes in
		// flight (512) is not what the benchmark measures.
		if i%200 == 199 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		up, err := p.metric("warden_proxy_tunnels_connected")
		if err == nil && int(up) >= n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %v of %d tunnels up after 10 minutes (%v)", up, n, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	connectTime := time.Since(start)
	b.Logf("%d tunnels up in %s", n, connectTime.Round(time.Millisecond))
	rss := p.settledRSS(b)
	selfRSS, _ := procStatusKB(os.Getpid(), "VmRSS")

	u := addUser(b, p.Admin, "bencher", []string{"access"}, []string{osUser})
	prof := login(b, p.ProxyAddr, u)
	ls := func() (time.Duration, int) {
		cmd := exec.Command(bin, "--home", prof.Path(""), "ls", "-o", "json")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("warden ls: %v: %s", err, errb.String())
		}
		d := time.Since(t0)
		var nodes []json.RawMessage
		if err := json.Unmarshal(out.Bytes(), &nodes); err != nil {
			b.Fatalf("warden ls -o json: %v", err)
		}
		return d, len(nodes)
	}
	ls() // warm up (page cache, TLS session)
	var times []time.Duration
	for i := 0; i < 9; i++ {
		d, got := ls()
		if got != n {
			b.Fatalf("warden ls listed %d nodes, want %d", got, n)
		}
		times = append(times, d)
	}
	ms := Millis(times)
	p50 := Median(ms)
	// The floor of any CLI command: a warden process that does no work.
	var vt []time.Duration
	for i := 0; i < 9; i++ {
		t0 := time.Now()
		if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil {
			b.Fatalf("warden version: %v: %s", err, out)
		}
		vt = append(vt, time.Since(t0))
	}

	// The same listing through the API alone (no process start, one TLS
	// session reused), to tell server work from CLI overhead.
	api, err := prof.APIClient()
	if err != nil {
		b.Fatal(err)
	}
	defer api.Close()
	var at []time.Duration
	for i := 0; i < 10; i++ {
		t0 := time.Now()
		nodes, err := api.ListNodes(context.Background(), nil)
		if err != nil {
			b.Fatalf("list nodes through the API: %v", err)
		}
		if len(nodes) != n {
			b.Fatalf("API listed %d nodes, want %d", len(nodes), n)
		}
		if i > 0 { // the first call pays the TLS handshake
			at = append(at, time.Since(t0))
		}
	}
	apiP50 := Median(Millis(at))

	b.ReportMetric(float64(n), "nodes")
	b.ReportMetric(rss, "proxy-RSS-MiB")
	b.ReportMetric(p50, "ls-p50-ms")
	b.ReportMetric(float64(n)/joinTime.Seconds(), "joins/s")
	b.ReportMetric(float64(n)/connectTime.Seconds(), "tunnels/s")
	nodes := groupThousands(strconv.Itoa(n))
	summary.Add(
		Row{Metric: "auth+proxy process RSS, " + nodes + " tunnels", Warden: rss, Baseline: nan, Unit: "MiB",
			Goal: Goal{Kind: AtMost, Value: 1024},
			Note: fmt.Sprintf("%.1f MiB before any node; %.1f KiB per tunnel; the simulating benchmark process: %.0f MiB",
				idle, (rss-idle)*1024/float64(n), selfRSS/1024)},
		Row{Metric: "warden ls -o json p50, " + nodes + " nodes", Warden: p50, Baseline: nan, Unit: "ms",
			Goal: Goal{Kind: AtMost, Value: 200},
			Note: fmt.Sprintf("p90 %.0f ms over %d runs of the real CLI; `warden version` alone takes %.0f ms; the API call alone (user's roles applied, warm TLS) %.0f ms",
				Percentile(ms, 90), len(ms), Median(Millis(vt)), apiP50)},
		Row{Metric: "node joins through the API (8 parallel)", Warden: float64(n) / joinTime.Seconds(), Baseline: nan, Unit: "joins/s",
			Note: fmt.Sprintf("%d joins in %s", n, joinTime.Round(time.Millisecond))},
		Row{Metric: "tunnels connected", Warden: float64(n) / connectTime.Seconds(), Baseline: nan, Unit: "tunnels/s",
			Note: fmt.Sprintf("%d tunnels up in %s", n, connectTime.Round(time.Millisecond))},
	)
}
