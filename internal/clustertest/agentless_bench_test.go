//go:build integration

package clustertest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// agentlessBench is a cluster with an agentless sshd, a logged-in user, and
// the same OpenSSH client invocations straight to sshd and through the
// proxy (ssh with warden config ssh).
type agentlessBench struct {
	proxied, direct func(cmd ...string) []string
}

func newAgentlessBench(b *testing.B) *agentlessBench {
	EnsureOSUser(b, osLogin)
	if r := Run(b, nil, "usermod", "-p", "*", osLogin); r.Code != 0 {
		b.Fatalf("usermod: %s", r)
	}
	c := New(b, Options{NoNode: true})
	a := StartAgentless(b, c, "legacy1", "env=prod")
	u := c.AddUser("bench", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	_, port, _ := strings.Cut(a.SSHD.Addr, ":")
	return &agentlessBench{
		proxied: func(cmd ...string) []string {
			return append([]string{"-F", cfg, "-o", "BatchMode=yes", osLogin + "@legacy1"}, cmd...)
		},
		direct: func(cmd ...string) []string {
			return append([]string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
				"-o", "IdentitiesOnly=yes", "-i", filepath.Join(home, "key"), "-o", "CertificateFile=" + filepath.Join(home, "key-cert.pub"),
				"-p", port, osLogin + "@127.0.0.1"}, cmd...)
		},
	}
}

// BenchmarkAgentlessConnect: ssh + true through the proxy to an agentless
// sshd against ssh + true straight to the same sshd, alternating in one
// run (target: at most 1.25x direct). default-kex lets OpenSSH pick its
// key exchange with sshd (sntrup761x25519 on OpenSSH 9); same-kex forces
// the direct connection to curve25519, which both hops through the proxy
// use (Go's SSH offers no post-quantum exchange).
func BenchmarkAgentlessConnect(b *testing.B) {
	ab := newAgentlessBench(b)
	for _, v := range []struct {
		name  string
		extra []string
	}{
		{"default-kex", nil},
		{"same-kex", []string{"-o", "KexAlgorithms=curve25519-sha256"}},
	} {
		b.Run(v.name, func(b *testing.B) {
			var direct, proxied time.Duration
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if r := Run(b, nil, "ssh", append(v.extra, ab.direct("true")...)...); r.Code != 0 {
					b.Fatalf("direct: %s", r)
				}
				t1 := time.Now()
				if r := Run(b, nil, "ssh", ab.proxied("true")...); r.Code != 0 {
					b.Fatalf("proxied: %s", r)
				}
				direct += t1.Sub(t0)
				proxied += time.Since(t1)
			}
			b.ReportMetric(float64(direct.Milliseconds())/float64(b.N), "direct-ms/op")
			b.ReportMetric(float64(proxied.Milliseconds())/float64(b.N), "proxied-ms/op")
			b.ReportMetric(float64(proxied)/float64(direct), "ratio")
		})
	}
}

// BenchmarkAgentlessThroughput: a terminal session writing 64 MiB, recorded
// at the proxy, against the same straight to sshd (target: at least 0.7x
// direct's throughput).
func BenchmarkAgentlessThroughput(b *testing.B) {
	ab := newAgentlessBench(b)
	const size = 64 << 20
	src := filepath.Join(os.TempDir(), "warden-agentless-bench")
	if err := os.WriteFile(src, []byte(strings.Repeat(strings.Repeat("x", 79)+"\n", size/80)), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.Remove(src) })
	cmd := fmt.Sprintf("cat %s", src)
	var direct, proxied time.Duration
	b.SetBytes(2 * size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if r := Run(b, nil, "ssh", append([]string{"-tt"}, ab.direct(cmd)...)...); r.Code != 0 || len(r.Stdout) < size {
			b.Fatalf("direct: code %d, %d bytes", r.Code, len(r.Stdout))
		}
		t1 := time.Now()
		if r := Run(b, nil, "ssh", append([]string{"-tt"}, ab.proxied(cmd)...)...); r.Code != 0 || len(r.Stdout) < size {
			b.Fatalf("proxied: code %d, %d bytes", r.Code, len(r.Stdout))
		}
		direct += t1.Sub(t0)
		proxied += time.Since(t1)
	}
	mbs := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / (1 << 20) }
	b.ReportMetric(mbs(direct), "direct-MiB/s")
	b.ReportMetric(mbs(proxied), "proxied-MiB/s")
	b.ReportMetric(mbs(proxied)/mbs(direct), "ratio")
}
