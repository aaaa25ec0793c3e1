package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/clustertest"
)

// rate runs op on workers goroutines for about d and returns operations
// per second. The first error stops the run.
func rate(tb testing.TB, workers int, d time.Duration, op func() error) float64 {
	tb.Helper()
	var (
		n        atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := op(); err != nil {
					errOnce.Do(func() { firstErr = err })
					stop.Store(true)
					return
				}
				n.Add(1)
			}
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
	return float64(n.Load()) / elapsed.Seconds()
}

// BenchmarkIssuance measures certificate issuance in process: the CA alone
// (ca.Authority.IssueUser), the pair a login returns (SSH user certificate
// plus X.509 client certificate), and the auth service's full node path
// (auth.Server.RenewNodeCerts: registration read, SSH host and X.509
// certificates, audit event in SQLite).
func BenchmarkIssuance(b *testing.B) {
	freeMemory()
	keys, err := ca.GenerateKeys("bench")
	if err != nil {
		b.Fatal(err)
	}
	a, err := ca.New(keys, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	_ = priv
	req := ca.UserCertRequest{PublicKey: sshPub, Username: "bencher",
		Principals: []string{osUser, "root", ca.InternalPrincipalPrefix + "bencher"},
		Roles:      []string{"access", "dev"}, Traits: map[string][]string{"logins": {osUser, "root"}},
		TTL: 8 * time.Hour, PermitPTY: true, PermitPortForwarding: true}
	tlsID := ca.TLSIdentity{Username: "bencher", Kind: ca.KindUser, Roles: req.Roles, Traits: req.Traits}
	issueUser := func() error { _, err := a.IssueUser(req); return err }
	loginPair := func() error {
		if _, err := a.IssueUser(req); err != nil {
			return err
		}
		_, err := a.IssueTLSClient(pub, tlsID, 8*time.Hour)
		return err
	}
	procs := runtime.GOMAXPROCS(0)
	const d = 3 * time.Second
	rate(b, procs, time.Second, issueUser) // warm up
	single := rate(b, 1, d, issueUser)
	parallel := rate(b, procs, d, issueUser)
	pair := rate(b, procs, d, loginPair)

	// The full path through the auth service, for a joined node.
	c := clustertest.New(b, clustertest.Options{NoNode: true})
	sims := clustertest.SimulateNodes(b, c, 1, func(int) map[string]string { return nil })
	caller := auth.Caller{Kind: auth.KindNode, NodeID: sims[0].ID}
	pubText := string(ssh.MarshalAuthorizedKey(sshPub))
	ctx := context.Background()
	renew := rate(b, procs, d, func() error { _, err := c.Proc.Auth().RenewNodeCerts(ctx, caller, pubText); return err })

	b.ReportMetric(single, "IssueUser-certs/s-1core")
	b.ReportMetric(parallel, "IssueUser-certs/s")
	b.ReportMetric(pair, "login-pairs/s")
	b.ReportMetric(renew, "auth-renew/s")
	goal := Goal{Kind: AtLeast, Value: 2000}
	summary.Add(
		Row{Metric: "ca.IssueUser, 1 goroutine", Warden: single, Baseline: nan, Unit: "certs/s"},
		Row{Metric: "ca.IssueUser, " + strconv.Itoa(procs) + " goroutines (all cores)", Warden: parallel, Baseline: nan, Unit: "certs/s", Goal: goal},
		Row{Metric: "login pair (SSH user + X.509 client)", Warden: pair, Baseline: nan, Unit: "pairs/s"},
		Row{Metric: "auth.RenewNodeCerts (storage+2 certs+audit)", Warden: renew, Baseline: nan, Unit: "/s"},
	)
}
