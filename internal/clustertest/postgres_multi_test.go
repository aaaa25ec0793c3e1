//go:build integration

package clustertest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/testkit"
)

// TestTwoInstancesOnePostgres: two Warden processes (auth and proxy each,
// with a node behind each) on one PostgreSQL database share their state:
// a user made through instance A logs in through B and reaches B's node;
// a lock made through A ends that live session behind B's proxy (through
// the change log: B's watch sees A's write), and an unlock through A lets
// the user back in; after every database connection is cut, a new lock
// through A still ends a session behind B; both instances append to one audit chain, which
// verifies (with the shared signing key) through either.
func TestTwoInstancesOnePostgres(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	st, db := postgresStorage(t)
	auth := service.AuthConfig{CheckpointInterval: 50 * time.Millisecond,
		AuditSigningKey: filepath.Join(t.TempDir(), "audit-signing-key.pem")}
	a := New(t, Options{NodeName: "node-a", Storage: st, Auth: auth})
	b := New(t, Options{NodeName: "node-b", Storage: st, Auth: auth})
	u := a.AddUser("multi", []string{"access"}, []string{osLogin})

	home := b.Login(u)
	cfg := b.SSHConfig(home)
	wait, arm := liveSession(t, sshArgs(cfg, osLogin+"@node-b", liveCommand))
	admin := t.TempDir()
	arm()
	id := lockID(t, a.Warden(admin, nil, "lock", "--user", "multi", "--message", "locked-through-a"))
	r, took := wait()
	if r.Code == 0 || !strings.Contains(r.Stderr, "locked-through-a") {
		t.Fatalf("the session behind proxy B did not end by the lock made through A: %s", r)
	}
	t.Logf("a lock through auth A ended a session behind proxy B in %s", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("lock took %s to end the session: want within 1s", took)
	}
	if r := Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@node-b", "true")...); r.Code == 0 {
		t.Fatalf("new ssh through B allowed while locked through A: %s", r)
	}
	if r := a.Warden(admin, nil, "unlock", id); r.Code != 0 {
		t.Fatalf("unlock: %s", r)
	}
	testkit.WaitFor(t, "ssh through B after the unlock through A", func() bool {
		return Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@node-b", "true")...).Code == 0
	})

	// Every connection of both instances to the database is cut (what a
	// database restart does); a lock made right after still ends the
	// session behind B: B's watch resumes from its last revision.
	wait, arm = liveSession(t, sshArgs(cfg, osLogin+"@node-b", liveCommand))
	if n := db.TerminateConnections(t); n == 0 {
		t.Fatal("no database connection to cut")
	}
	arm()
	lockID(t, a.Warden(admin, nil, "lock", "--user", "multi", "--message", "locked-after-the-cut"))
	r, took = wait()
	if r.Code == 0 || !strings.Contains(r.Stderr, "locked-after-the-cut") {
		t.Fatalf("after the cut, the session behind B did not end by the lock through A: %s", r)
	}
	t.Logf("after every database connection was cut, a lock through A ended a session behind B in %s", took.Round(time.Millisecond))

	// One chain with both instances' events; it verifies through either
	// once a checkpoint signs the newest events.
	for _, c := range []*Cluster{a, b} {
		var v Result
		testkit.WaitFor(t, "audit verify through "+c.ProxyAddr(), func() bool {
			v = c.Warden(admin, nil, "audit", "verify")
			return v.Code == 0 && strings.Contains(v.Stdout, "signed: events up to seq")
		})
		if !strings.Contains(v.Stdout, "intact") || !strings.Contains(v.Stdout, "signed: events up to seq") {
			t.Fatalf("audit verify: %s", v)
		}
	}
	ev := a.Warden(admin, nil, "audit", "search", "--user", "multi")
	for _, want := range []string{"user.login", "lock.create"} {
		if !strings.Contains(ev.Stdout+b.Warden(admin, nil, "audit", "search").Stdout, want) {
			t.Fatalf("audit search lacks %s: %s", want, ev)
		}
	}
}
