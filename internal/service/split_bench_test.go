package service

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/wire"
)

// BenchmarkSplitWatchPropagation: how long a lock written through auth
// takes to reach a watch stream (what nodes follow), read directly from
// auth (the baseline) and through a proxy running apart, which forwards
// the stream with the watcher's certificate. Reported: p50 and p99 per
// path, and the ratio of the p50s.
func BenchmarkSplitWatchPropagation(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	ap, err := Start(ctx, &Config{DataDir: filepath.Join(dir, "auth"), Services: []string{Auth}, Auth: AuthConfig{Listen: "127.0.0.1:0"},
		Proxy: ProxyConfig{MetricsAddr: MetricsOff}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ap.Close()
	a := ap.Auth()
	tok, err := a.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: wire.TokenTypeProxy, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	pp, err := Start(ctx, &Config{DataDir: filepath.Join(dir, "proxy"), Services: []string{Proxy}, Proxy: ProxyConfig{Listen: "127.0.0.1:0",
		MetricsAddr: MetricsOff, AuthServers: []string{ap.ProxyAddr()}, Token: tok.Token,
		CAPin: api.Fingerprint(a.Authority().TLSCACert().Raw)}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer pp.Close()
	id, err := idfile.Read(idfile.AdminPath(filepath.Join(dir, "auth")))
	if err != nil {
		b.Fatal(err)
	}
	cert, err := id.TLSCertificate()
	if err != nil {
		b.Fatal(err)
	}
	pool, err := id.RootCAs()
	if err != nil {
		b.Fatal(err)
	}
	var p50s []time.Duration
	for _, path := range []struct{ name, addr string }{{"direct", ap.ProxyAddr()}, {"through-proxy", pp.ProxyAddr()}} {
		b.Run(path.name, func(b *testing.B) {
			c, err := api.NewClient(api.ClientConfig{Addr: path.addr, RootCAs: pool, Certificate: cert})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			seen := make(chan string, 64)
			ready := make(chan struct{})
			go func() {
				_ = c.Watch(wctx, func(ev api.WatchEvent) {
					switch {
					case ev.Type == "snapshot":
						close(ready)
					case ev.Kind == "lock" && ev.Type == "put" && ev.Lock != nil:
						seen <- ev.Lock.ID
					}
				})
			}()
			select {
			case <-ready:
			case <-time.After(30 * time.Second):
				b.Fatal("no watch snapshot")
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				res, err := a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "bench-nobody"}, TTL: time.Minute})
				if err != nil {
					b.Fatal(err)
				}
				for got := ""; got != res.Lock.ID; {
					select {
					case got = <-seen:
					case <-time.After(30 * time.Second):
						b.Fatal("the lock never reached the watch")
					}
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			if b.N > 1 {
				p50s = append(p50s, p50)
			}
		})
	}
	if len(p50s) == 2 {
		b.Logf("through the proxy / direct, p50: %.2f", float64(p50s[1])/float64(p50s[0]))
	}
}
