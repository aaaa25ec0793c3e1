//go:build integration

package clustertest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/storage/postgres/pgtest"
	"github.com/warden-sh/warden/internal/testkit"
)

// postgresStorage is a fresh database as storage config: the connection
// string without the password, which is in a 0600 file.
func postgresStorage(t testing.TB) (service.StorageConfig, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	pwFile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(pwFile, []byte(db.Config.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := "postgres://" + db.Config.User + "@" + db.Config.Host + ":" + strconv.Itoa(int(db.Config.Port)) + "/" + db.Name + "?sslmode=disable"
	return service.StorageConfig{Type: service.StoragePostgres, Conn: conn, PasswordFile: pwFile}, db
}

// TestPostgresEndToEnd: an all-in-one cluster whose state and audit log
// are on PostgreSQL. A user signs up, logs in with the CLI and runs a
// command through OpenSSH; the audit log verifies with its signed
// checkpoints; nothing was written to SQLite; after a restart on a new
// process the state (users, CAs) is still there and the user logs in
// again.
func TestPostgresEndToEnd(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	st, db := postgresStorage(t)
	dir := t.TempDir()
	opts := Options{NodeName: "pgnode", DataDir: dir, Storage: st, Auth: service.AuthConfig{CheckpointInterval: 50 * time.Millisecond}}
	c := New(t, opts)
	u := c.AddUser("pguser", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	r := Run(t, nil, "ssh", sshArgs(c.SSHConfig(home), osLogin+"@pgnode", "echo on-postgres; whoami")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "on-postgres\n"+osLogin) {
		t.Fatalf("ssh: %s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "warden.db")); !os.IsNotExist(err) {
		t.Fatalf("a SQLite file was made in the data directory (%v): storage must be PostgreSQL only", err)
	}
	conn, err := pgx.Connect(t.Context(), db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var users, logins int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM kv WHERE key LIKE '/users/pguser%'`).Scan(&users); err != nil || users == 0 {
		t.Fatalf("user records in PostgreSQL: %d, %v", users, err)
	}
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE event = 'user.login' AND "user" = 'pguser'`).Scan(&logins); err != nil || logins == 0 {
		t.Fatalf("login events in PostgreSQL: %d, %v", logins, err)
	}
	admin := t.TempDir()
	waitSigned := func() {
		t.Helper()
		testkit.WaitFor(t, "a signed checkpoint after the last login", func() bool {
			var n int
			err := conn.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE event = $1 AND seq >
				(SELECT max(seq) FROM audit_events WHERE event = 'user.login')`, audit.Checkpoint).Scan(&n)
			return err == nil && n > 0
		})
	}
	waitSigned()
	if r := c.Warden(admin, nil, "audit", "verify"); r.Code != 0 || !strings.Contains(r.Stdout, "intact") || !strings.Contains(r.Stdout, "signed: events up to seq") {
		t.Fatalf("audit verify: %s", r)
	}

	// A new process on the same database and data directory: the state is
	// the database's.
	c.Proc.Close()
	c2 := New(t, opts)
	home2 := c2.Login(u)
	r = Run(t, nil, "ssh", sshArgs(c2.SSHConfig(home2), osLogin+"@pgnode", "echo again")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "again") {
		t.Fatalf("ssh after restart: %s", r)
	}
	waitSigned()
	if r := c2.Warden(admin, nil, "audit", "verify"); r.Code != 0 || !strings.Contains(r.Stdout, "intact") {
		t.Fatalf("audit verify after restart: %s", r)
	}
}
