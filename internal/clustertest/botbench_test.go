//go:build integration

package clustertest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

// benchBot is one bot's current identity.
type benchBot struct {
	mu    sync.Mutex
	priv  ed25519.PrivateKey
	certs wire.Certs
}

func newBotKey(tb testing.TB) (ed25519.PrivateKey, string) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	return priv, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

// BenchmarkBotRenewals: one auth instance (the all-in-one cluster) and
// 10,000 joined bots; each operation is what a bot does at a renewal, over
// HTTPS on a new TLS connection with its identity: renew the identity
// (generation+1), then one output's certificates. Reports the sustained
// renewals per second, auth's CPU per renewal (the process's, the clients'
// TLS work included, so an upper bound), and the headroom over what 10,000
// bots with 1 h certificates need (one renewal per bot every 40 min).
func BenchmarkBotRenewals(b *testing.B) {
	const bots = 10000
	c := New(b, Options{NoNode: true})
	ctx := context.Background()
	a := c.Proc.Auth()
	ping, err := c.Admin.Ping(ctx)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ping.TLSCA))
	all := make([]*benchBot, bots)
	setup := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= bots {
					return
				}
				res, err := a.CreateBot(ctx, auth.AdminCaller(), wire.CreateBotRequest{Name: fmt.Sprintf("b%05d", i), Roles: []string{"access"}, Logins: []string{"deploy"}})
				if err != nil {
					b.Error(err)
					return
				}
				priv, pub := newBotKey(b)
				got, err := a.JoinBot(ctx, wire.BotJoinRequest{Token: res.Token.Token, PublicKey: pub, RemoteAddr: "127.0.0.1"})
				if err != nil {
					b.Error(err)
					return
				}
				all[i] = &benchBot{priv: priv, certs: got.Certs}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	b.Logf("%d bots joined in %s", bots, time.Since(setup).Round(time.Millisecond))

	var idx atomic.Int64
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bot := all[int(idx.Add(1))%bots]
			bot.mu.Lock()
			block, _ := pem.Decode([]byte(bot.certs.TLSCert))
			cl, err := api.NewClient(api.ClientConfig{Addr: c.ProxyAddr(), RootCAs: pool,
				Certificate: &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: bot.priv}})
			if err != nil {
				b.Error(err)
				bot.mu.Unlock()
				return
			}
			priv, pub := newBotKey(b)
			got, err := cl.RenewBotCerts(ctx, pub)
			cl.Close()
			if err != nil {
				b.Errorf("renew: %v", err)
				bot.mu.Unlock()
				return
			}
			bot.priv, bot.certs = priv, got.Certs
			block, _ = pem.Decode([]byte(bot.certs.TLSCert))
			cl, _ = api.NewClient(api.ClientConfig{Addr: c.ProxyAddr(), RootCAs: pool,
				Certificate: &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: bot.priv}})
			_, opub := newBotKey(b)
			_, err = cl.BotOutputCerts(ctx, opub, nil)
			cl.Close()
			bot.mu.Unlock()
			if err != nil {
				b.Errorf("output: %v", err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
	rate := float64(b.N) / elapsed.Seconds()
	need := float64(bots) / (40 * 60)
	b.ReportMetric(rate, "renewals/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/renewal")
	b.ReportMetric(rate/need, "x-needed")
}

// BenchmarkBotOneshotToSSH: a CI job's first step, timed: the real
// `warden bot start --oneshot` from nothing (a fresh join token, empty
// directories) and then a real `ssh -F DIR/ssh_config` command on a node.
// Goal: ≤ 300 ms for both.
func BenchmarkBotOneshotToSSH(b *testing.B) {
	EnsureOSUser(b, "wbot")
	c := New(b, Options{NodeName: "node1"})
	c.ApplyRoles(botRoles)
	ctx := context.Background()
	ping, err := c.Admin.Ping(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Admin.CreateBot(ctx, wire.CreateBotRequest{Name: "ci", Roles: []string{"ci"}, Logins: []string{"wbot"}}); err != nil {
		b.Fatal(err)
	}
	var oneshot, total time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		tok, err := c.Admin.CreateToken(ctx, wire.CreateTokenRequest{Type: "bot", Bot: "ci"})
		if err != nil {
			b.Fatal(err)
		}
		dir := b.TempDir()
		tokenFile := filepath.Join(dir, "token")
		os.WriteFile(tokenFile, []byte(tok.Token), 0o600)
		dest := filepath.Join(dir, fmt.Sprintf("out%d", i))
		b.StartTimer()
		t0 := time.Now()
		if res := Run(b, nil, WardenBinary, "bot", "start", "--proxy", c.ProxyAddr(), "--ca-pin", ping.TLSCAFingerprint, "--token-file", tokenFile,
			"--dest", dest, "--storage", filepath.Join(dir, "state"), "--oneshot"); res.Code != 0 {
			b.Fatalf("oneshot: %s", res)
		}
		t1 := time.Now()
		if res := Run(b, nil, "ssh", "-F", filepath.Join(dest, "ssh_config"), "wbot@node1", "true"); res.Code != 0 {
			b.Fatalf("ssh: %s", res)
		}
		oneshot += t1.Sub(t0)
		total += time.Since(t0)
	}
	b.ReportMetric(float64(oneshot.Microseconds())/1000/float64(b.N), "oneshot-ms")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "oneshot+ssh-ms")
}
