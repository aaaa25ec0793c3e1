//go:build integration

package clustertest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkSessionMFA measures what per-session MFA adds to `warden ssh`
// connection set-up, beyond the human's answer: in the same run, a plain
// `warden ssh NODE true` to a node without session MFA, and the same to a
// node whose role requires it, the TOTP code scripted (--mfa-code-file).
// Each iteration uses a fresh code (the replay guard refuses a code twice),
// from a pool of users. Reported: the medians and their difference
// (target: at most 100 ms).
func BenchmarkSessionMFA(b *testing.B) {
	c := sessionMFABenchCluster(b)
	type profile struct {
		u    *User
		home string
	}
	users := make([]*profile, 0, 8)
	for i := range cap(users) {
		u := c.AddUser(fmt.Sprintf("bench%d", i), []string{"dev", "prod"}, []string{osLogin})
		users = append(users, &profile{u: u, home: c.Login(u)})
	}
	codeFile := filepath.Join(b.TempDir(), "code")
	run := func(home string, args ...string) time.Duration {
		start := time.Now()
		r := c.Warden(home, nil, args...)
		d := time.Since(start)
		if r.Code != 0 {
			b.Fatalf("warden %s: %s", strings.Join(args, " "), r)
		}
		return d
	}
	var plain, mfa []time.Duration
	b.ResetTimer()
	for i := range b.N {
		p := users[i%len(users)]
		plain = append(plain, run(p.home, "ssh", osLogin+"@plain1", "true"))
		b.StopTimer()
		if err := os.WriteFile(codeFile, []byte(p.u.NextOTP(b)+"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		mfa = append(mfa, run(p.home, "ssh", "--mfa-code-file", codeFile, osLogin+"@mfa1", "true"))
	}
	b.StopTimer()
	median := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	mp, mm := median(plain), median(mfa)
	b.ReportMetric(float64(mp.Microseconds())/1000, "plain-ms")
	b.ReportMetric(float64(mm.Microseconds())/1000, "session-mfa-ms")
	b.ReportMetric(float64((mm-mp).Microseconds())/1000, "added-ms")
	b.ReportMetric(float64(mm)/float64(mp), "ratio")
}

// BenchmarkSSHPlain measures `warden ssh NODE true` set-up to a node
// without per-session MFA, with a cluster where other nodes require it:
// what every plain session pays for per-session MFA existing (since the
// connect-first flow, no call to auth beyond the node lookup). Reported:
// the median.
func BenchmarkSSHPlain(b *testing.B) {
	c := sessionMFABenchCluster(b)
	u := c.AddUser("bench", []string{"dev", "prod"}, []string{osLogin})
	home := c.Login(u)
	var plain []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		r := c.Warden(home, nil, "ssh", osLogin+"@plain1", "true")
		plain = append(plain, time.Since(start))
		if r.Code != 0 {
			b.Fatalf("warden ssh: %s", r)
		}
	}
	b.StopTimer()
	slices.Sort(plain)
	b.ReportMetric(float64(plain[len(plain)/2].Microseconds())/1000, "plain-ms")
}

// sessionMFABenchCluster is the session MFA benchmarks' cluster: node
// plain1 (env=dev, role dev) and node mfa1 (env=prod, role prod, which
// requires per-session MFA).
func sessionMFABenchCluster(b *testing.B) *Cluster {
	EnsureOSUser(b, osLogin)
	c := New(b, Options{NodeName: "node1"})
	c.StartNode("plain1", map[string]string{"env": "dev"})
	c.StartNode("mfa1", map[string]string{"env": "prod"})
	c.WaitForNodes(3)
	c.ApplyRoles(`
kind: role
metadata: {name: dev}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: dev}
---
kind: role
metadata: {name: prod}
spec:
  options: {require_session_mfa: true}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: prod}
`)
	return c
}
