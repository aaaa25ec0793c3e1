//go:build integration

package clustertest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/testkit"
)

// TestMigrateSQLiteToPostgres: a cluster on SQLite with a user, a recorded
// session and signed checkpoints is stopped, `warden migrate` moves it to
// PostgreSQL (recordings to a new directory) and says what it moved; the
// cluster started on PostgreSQL has the same users, CAs and nodes (the
// user logs in, the node is reached, and old profiles still trust it), and
// `warden audit verify` finds the chain intact, signed, with the
// recording. A second migrate into the now non-empty database is refused
// unless told to replace.
func TestMigrateSQLiteToPostgres(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	dir := t.TempDir()
	// A fixed port: the profiles made before the move must work after it.
	opts := Options{NodeName: "mignode", DataDir: dir, Auth: service.AuthConfig{CheckpointInterval: 50 * time.Millisecond},
		Proxy: service.ProxyConfig{Listen: "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))}}
	c := New(t, opts)
	c.ApplyRoles(recordInputRole)
	u := c.AddUser("miguser", []string{"recorded"}, []string{osLogin})
	home := c.Login(u)
	r := Run(t, strings.NewReader("echo before-migrate\nexit\n"), "ssh", sshArgs(c.SSHConfig(home), "-tt", osLogin+"@mignode")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "before-migrate") {
		t.Fatalf("ssh: %s", r)
	}
	rec := c.waitRecording(t, func(in recording.Info) bool { return in.Complete && in.User == "miguser" })
	admin := t.TempDir()
	c.Proc.Close()

	st, _ := postgresStorage(t)
	recTo := filepath.Join(t.TempDir(), "shared-recordings")
	t.Setenv(service.PasswordEnv, "") // the password comes from the file here
	args := []string{"migrate", "--from", "sqlite:" + filepath.Join(dir, "warden.db"), "--to", st.Conn,
		"--password-file", st.PasswordFile, "--recordings-to", recTo}
	m := c.Warden(admin, nil, args...)
	if m.Code != 0 {
		t.Fatalf("migrate: %s", m)
	}
	for _, want := range []string{"state:", "items", "audit log:", "events (seq 1 to", "audit chain verifies on the target",
		"recordings: 1 ("} {
		if !strings.Contains(m.Stdout, want) {
			t.Fatalf("migrate output lacks %q:\n%s", want, m)
		}
	}
	t.Logf("migrate said:\n%s", m.Stdout)
	if _, err := os.Stat(filepath.Join(recTo, rec.SessionID+".cast")); err != nil {
		t.Fatalf("recording not copied: %v", err)
	}

	// Again, into the now full database: refused, then replaced on request.
	if again := c.Warden(admin, nil, args...); again.Code == 0 || !strings.Contains(again.Stderr, "not empty") {
		t.Fatalf("migrate into a non-empty database: %s", again)
	}
	if again := c.Warden(admin, nil, append(args, "--replace")...); again.Code != 0 {
		t.Fatalf("migrate --replace: %s", again)
	}

	// Keep the SQLite file out of the way: the new cluster must not read it.
	if err := os.Rename(filepath.Join(dir, "warden.db"), filepath.Join(dir, "warden.db.migrated")); err != nil {
		t.Fatal(err)
	}
	st.RecordingsDir = recTo
	opts.Storage = st
	c2 := New(t, opts)
	// The old profile's certificates and trust still work: same CAs.
	r = Run(t, nil, "ssh", sshArgs(c2.SSHConfig(home), osLogin+"@mignode", "echo after-migrate")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "after-migrate") {
		t.Fatalf("ssh with the pre-migration profile: %s", r)
	}
	home2 := c2.Login(u)
	if ls := c2.Warden(home2, nil, "ls"); ls.Code != 0 || !strings.Contains(ls.Stdout, "mignode") {
		t.Fatalf("ls after migrate: %s", ls)
	}
	if p := c2.Warden(admin, nil, "recordings", "export", rec.SessionID); p.Code != 0 || !strings.Contains(p.Stdout, "before-migrate") {
		t.Fatalf("recording after migrate: code %d stderr %s", p.Code, p.Stderr)
	}
	// Checkpoints are signed on the sweeper's tick (seconds): until one
	// signs the last login, verify warns about the unsigned tail.
	var v Result
	testkit.WaitFor(t, "audit verify to pass once a checkpoint signs the last login", func() bool {
		v = c2.Warden(admin, nil, "audit", "verify")
		return v.Code == 0
	})
	if v.Code != 0 || !strings.Contains(v.Stdout, "intact") || !strings.Contains(v.Stdout, "signed: events up to seq") ||
		!strings.Contains(v.Stdout, "recordings: 1 intact") {
		t.Fatalf("audit verify after migrate: %s", v)
	}
}
