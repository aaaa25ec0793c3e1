package auth_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/krl"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/storage/sqlite"
	"github.com/warden-sh/warden/internal/testkit"
)

// login logs name in and returns its SSH certificate.
func (f *fixture) loginCert(name, secret string) *ssh.Certificate {
	f.t.Helper()
	resp, err := f.a.Login(context.Background(), auth.LoginRequest{User: name, Password: "a good long password",
		OTP: f.code(secret), PublicKey: pubKey(f.t), TTL: time.Hour})
	if err != nil {
		f.t.Fatal(err)
	}
	f.clock.Advance(30 * time.Second) // the next login needs a fresh TOTP step
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.SSHCert))
	if err != nil {
		f.t.Fatal(err)
	}
	return pub.(*ssh.Certificate)
}

func (f *fixture) krl() *krl.KRL {
	f.t.Helper()
	res, err := f.a.KRL(context.Background(), auth.AdminCaller(), "", 0)
	if err != nil {
		f.t.Fatal(err)
	}
	k, err := krl.Parse(res.Data)
	if err != nil {
		f.t.Fatal(err)
	}
	return k
}

// TestKRLRevokesWhatAuthRefuses: the KRL names exactly the certificates
// auth would now refuse, and forgets them once they are accepted again.
func TestKRLRevokesWhatAuthRefuses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dev := f.loginCert("dev", f.signup("dev", []string{"access"}, []string{"dev"}))
	ops := f.loginCert("ops", f.signup("ops", []string{"access", "auditor"}, []string{"ops"}))
	gone := f.loginCert("gone", f.signup("gone", []string{"access"}, []string{"gone"}))
	revoked := func(c *ssh.Certificate) bool { return f.krl().Revoked(c) }
	for _, c := range []*ssh.Certificate{dev, ops, gone} {
		if revoked(c) {
			t.Fatalf("%s revoked before any lock", c.KeyId)
		}
	}
	// A user lock: by key ID, so also certificates auth has no record of.
	l, err := f.a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "dev"}})
	if err != nil {
		t.Fatal(err)
	}
	if !revoked(dev) || revoked(ops) {
		t.Fatal("user lock: dev's certificate must be revoked, ops's not")
	}
	if k := f.krl(); len(k.Certs) != 1 || len(k.Certs[0].KeyIDs) != 1 || k.Certs[0].KeyIDs[0] != "dev" {
		t.Fatalf("user lock: KRL %+v, want key ID dev", k.Certs)
	}
	// Unlocked: accepted again.
	if err := f.a.DeleteLock(ctx, auth.AdminCaller(), l.Lock.ID); err != nil {
		t.Fatal(err)
	}
	if revoked(dev) {
		t.Fatal("unlocked user still revoked")
	}
	// A role lock: by serial, the certificates that carry the role.
	if _, err := f.a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{Role: "auditor"}}); err != nil {
		t.Fatal(err)
	}
	if !revoked(ops) || revoked(dev) {
		t.Fatal("role lock: ops's certificate (auditor) must be revoked, dev's not")
	}
	// A removed user: their certificates by serial (a new user of that
	// name is not affected: no key ID).
	if err := f.a.DeleteUser(ctx, auth.AdminCaller(), "gone"); err != nil {
		t.Fatal(err)
	}
	if !revoked(gone) {
		t.Fatal("removed user's certificate not revoked")
	}
	for _, s := range f.krl().Certs[0].KeyIDs {
		if s == "gone" {
			t.Fatal("a removed user is revoked by key ID: a new signup of that name would be refused too")
		}
	}
}

// TestKRLLongPollWakesOnLock: a sync waiting with the current digest gets
// the new KRL as soon as a lock is made, not at the end of its wait.
func TestKRLLongPollWakesOnLock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cur, err := f.a.KRL(ctx, auth.AdminCaller(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *auth.KRLResult, 1)
	go func() {
		res, err := f.a.KRL(ctx, auth.AdminCaller(), cur.SHA256, time.Hour)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	if _, err := f.a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{User: "someone"}}); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res == nil || res.SHA256 == cur.SHA256 || res.KeyIDs != 1 {
		t.Fatalf("long poll returned %+v", res)
	}
}

// BenchmarkKRL100k: the KRL of 100,000 revoked certificates (a locked
// role they all carry), built from auth's records (the target:
// 100 ms); it reports the KRL's size.
func BenchmarkKRL100k(b *testing.B) {
	ctx := context.Background()
	b.StopTimer()
	sb, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(b.TempDir(), "w.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	a, err := auth.New(ctx, auth.Config{ClusterName: "bench", Backend: sb, Audit: sb.AuditLog(), PublicAddr: "proxy:3080"})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	if _, err := a.CreateUser(ctx, auth.AdminCaller(), auth.CreateUserRequest{Name: "dev", Roles: []string{"access"}, Logins: []string{"dev"}}); err != nil {
		b.Fatal(err)
	}
	if err := auth.PutIssuedForBench(a, 100_000, "dev", "access", time.Now()); err != nil {
		b.Fatal(err)
	}
	if _, err := a.CreateLock(ctx, auth.AdminCaller(), auth.CreateLockRequest{Target: lock.Target{Role: "access"}}); err != nil {
		b.Fatal(err)
	}
	// Once the watch has delivered every record (and stopped working).
	testkit.WaitFor(b, "the watch to deliver every record", func() bool { return auth.IssuedCount(a) == 100_000 })
	runtime.GC()
	var res *auth.KRLResult
	// The process's CPU time as well as the wall time: on a shared
	// machine the wall time mostly measures the wait for a core.
	cpu0 := processCPU(b)
	b.StartTimer()
	for b.Loop() {
		if res, err = auth.BuildKRL(a); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if res.Serials != 100_000 {
		b.Fatalf("%d serials revoked, want 100000", res.Serials)
	}
	b.ReportMetric(float64(len(res.Data)), "bytes")
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// TestAgentlessProbesBounded: warden nodes ls probes agentless servers
// concurrently but at most auth.AgentlessProbeConcurrency at once. Each
// fake sshd holds its connection a moment before it answers, so that
// unbounded probes would all be open together.
func TestAgentlessProbesBounded(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var open, most atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				n := open.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(100 * time.Millisecond)
				open.Add(-1)
				_, _ = conn.Write([]byte("SSH-2.0-fake\r\n"))
			}()
		}
	}()
	const servers = 3 * auth.AgentlessProbeConcurrency
	for i := 0; i < servers; i++ {
		n := &auth.AgentlessNode{}
		n.Metadata.Name = fmt.Sprintf("srv%03d", i)
		n.Spec.Addr = ln.Addr().String()
		if err := f.a.UpsertAgentlessNode(ctx, auth.AdminCaller(), n); err != nil {
			t.Fatal(err)
		}
	}
	list, err := f.a.ListAgentlessNodes(ctx, auth.AdminCaller())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != servers {
		t.Fatalf("%d servers listed, want %d", len(list), servers)
	}
	for _, n := range list {
		if !n.Status.Reachable {
			t.Fatalf("%s: not reachable: %s", n.Metadata.Name, n.Status.Error)
		}
	}
	if m := most.Load(); m > auth.AgentlessProbeConcurrency || m < 2 {
		t.Fatalf("%d probes at once, want 2 to %d", m, auth.AgentlessProbeConcurrency)
	}
	t.Logf("at most %d probes at once", most.Load())
}

// processCPU is the CPU time (user and system) the process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
