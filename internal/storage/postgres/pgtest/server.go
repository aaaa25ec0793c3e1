package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir is where Debian's PostgreSQL 15 keeps initdb, pg_ctl and
// pg_basebackup (WARDEN_TEST_PG_BIN overrides it).
const BinDir = "/usr/lib/postgresql/15/bin"

func binDir() string {
	if d := os.Getenv("WARDEN_TEST_PG_BIN"); d != "" {
		return d
	}
	return BinDir
}

// Server is a throwaway PostgreSQL cluster a test owns: its own data
// directory and port on 127.0.0.1, run as the postgres user (the server
// refuses root), so that the test may stop, kill, restart or promote it
// without disturbing the shared server other tests use. Connections from
// 127.0.0.1 are trusted (no password): a test-only cluster on loopback.
type Server struct {
	tb   testing.TB
	Dir  string // data directory
	Port int
	logf string
}

// ServerOptions tune NewServer.
type ServerOptions struct {
	// Settings are extra postgresql.conf lines ("name = value").
	Settings []string
}

// NewServer initialises and starts a cluster; it is stopped (immediately)
// and removed when the test ends. It fails the test when initdb or pg_ctl
// is missing: it never skips.
func NewServer(tb testing.TB, opts ServerOptions) *Server {
	tb.Helper()
	s := newServerDir(tb)
	s.run(5*time.Minute, "initdb", "-D", s.Dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	s.configure(opts.Settings)
	s.Start()
	return s
}

// newServerDir makes a data directory the postgres user owns, removed
// (after the server stops) when the test ends.
func newServerDir(tb testing.TB) *Server {
	tb.Helper()
	pg, err := user.Lookup("postgres")
	if err != nil {
		tb.Fatalf("pgtest: no postgres user (install postgresql-15): %v", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	parent, err := os.MkdirTemp("", "warden-pgtest-")
	if err != nil {
		tb.Fatal(err)
	}
	// The postgres user must reach the directory; its data stays 0700.
	if err := os.Chmod(parent, 0o755); err != nil {
		tb.Fatal(err)
	}
	dir := filepath.Join(parent, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		tb.Fatal(err)
	}
	s := &Server{tb: tb, Dir: dir, Port: freePort(tb), logf: filepath.Join(parent, "server.log")}
	if err := os.WriteFile(s.logf, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chown(s.logf, uid, gid); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.stop("immediate", false)
		if tb.Failed() {
			if b, err := os.ReadFile(s.logf); err == nil {
				tb.Logf("pgtest: server log of port %d (last 4 KiB):\n%s", s.Port, tail(b, 4096))
			}
		}
		os.RemoveAll(parent)
	})
	return s
}

// configure appends the test cluster's settings to postgresql.conf and
// trusts loopback connections, replication included.
func (s *Server) configure(extra []string) {
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("port = %d", s.Port),
		"unix_socket_directories = ''",
		"shared_buffers = 32MB",
		"max_connections = 100",
		"wal_level = replica",
		"max_wal_senders = 4",
		"hot_standby = on",
		"fsync = on",
	}
	conf = append(conf, extra...)
	s.appendFile("postgresql.conf", strings.Join(conf, "\n")+"\n")
	s.appendFile("pg_hba.conf", "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n")
}

func (s *Server) appendFile(name, text string) {
	f, err := os.OpenFile(filepath.Join(s.Dir, name), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		s.tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		s.tb.Fatal(err)
	}
}

// run runs a PostgreSQL program as the postgres user.
func (s *Server) run(timeout time.Duration, prog string, args ...string) string {
	s.tb.Helper()
	out, err := s.tryRun(timeout, prog, args...)
	if err != nil {
		s.tb.Fatalf("pgtest: %s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
	return out
}

func (s *Server) tryRun(timeout time.Duration, prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", filepath.Join(binDir(), prog)}, args...)...)
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Start starts the server and waits until it accepts connections.
func (s *Server) Start() {
	s.tb.Helper()
	s.run(2*time.Minute, "pg_ctl", "-D", s.Dir, "-l", s.logf, "-w", "-t", "120", "start")
}

// Stop stops the server: mode "fast" (sessions are ended, what committed
// is kept), or "immediate" (a crash: the next start recovers from the
// write-ahead log).
func (s *Server) Stop(mode string) {
	s.tb.Helper()
	s.stop(mode, true)
}

func (s *Server) stop(mode string, must bool) {
	if _, err := os.Stat(filepath.Join(s.Dir, "postmaster.pid")); err != nil {
		return // not running
	}
	out, err := s.tryRun(2*time.Minute, "pg_ctl", "-D", s.Dir, "-m", mode, "-w", "-t", "120", "stop")
	if err != nil && must {
		s.tb.Fatalf("pgtest: pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
}

// Restart stops the server (mode as for Stop) and starts it again.
func (s *Server) Restart(mode string) {
	s.tb.Helper()
	s.Stop(mode)
	s.Start()
}

// Kill sends SIGKILL to the postmaster, as a machine that dies: its
// backends notice and exit, and the port stops answering. Nothing is
// flushed on the way out.
func (s *Server) Kill() {
	s.tb.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "postmaster.pid"))
	if err != nil {
		s.tb.Fatalf("pgtest: kill: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		s.tb.Fatalf("pgtest: kill: postmaster.pid: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		s.tb.Fatalf("pgtest: kill %d: %v", pid, err)
	}
	// Its backends die when they notice their postmaster is gone; end
	// them now (by pid: the children of this postmaster only), as the
	// machine's death would.
	for _, c := range childPIDs(pid) {
		syscall.Kill(c, syscall.SIGKILL) //nolint:errcheck // may have exited
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.Addr(), 100*time.Millisecond)
		if err != nil {
			os.Remove(filepath.Join(s.Dir, "postmaster.pid"))
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	s.tb.Fatalf("pgtest: port %d still answers after killing the postmaster", s.Port)
}

// Promote promotes a standby to primary and waits until it accepts writes.
func (s *Server) Promote() {
	s.tb.Helper()
	s.run(2*time.Minute, "pg_ctl", "-D", s.Dir, "-w", "-t", "120", "promote")
}

// NewStandby makes a streaming-replication standby of s (pg_basebackup -R,
// from the running primary) on its own port and directory, and starts it.
func (s *Server) NewStandby(opts ServerOptions) *Server {
	s.tb.Helper()
	st := newServerDir(s.tb)
	if err := os.Remove(st.Dir); err != nil { // pg_basebackup makes it
		s.tb.Fatal(err)
	}
	if err := os.Chown(filepath.Dir(st.Dir), 0, 0); err != nil {
		s.tb.Fatal(err)
	}
	// pg_basebackup runs as postgres and must create the directory.
	if err := os.Chmod(filepath.Dir(st.Dir), 0o777); err != nil {
		s.tb.Fatal(err)
	}
	st.run(5*time.Minute, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", "postgres",
		"-D", st.Dir, "-R", "-X", "stream", "--checkpoint=fast", "-c", "fast")
	if err := os.Chmod(filepath.Dir(st.Dir), 0o755); err != nil {
		s.tb.Fatal(err)
	}
	// The primary's settings came with the copy: give the standby its
	// own port, and a name the primary can wait for.
	st.appendFile("postgresql.conf", strings.Join(append([]string{
		fmt.Sprintf("port = %d", st.Port),
		"cluster_name = 'standby'",
	}, opts.Settings...), "\n")+"\n")
	st.appendFile("postgresql.auto.conf", "primary_conninfo = 'host=127.0.0.1 port="+strconv.Itoa(s.Port)+" user=postgres application_name=standby'\n")
	st.Start()
	return st
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL connects to database db as the postgres superuser (trusted on
// loopback: no password).
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", s.Addr(), db)
}

// Exec runs sql on database db.
func (s *Server) Exec(db, sql string, args ...any) {
	s.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		s.tb.Fatalf("pgtest: connect to %s: %v", s.Addr(), err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		s.tb.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// CreateDB creates an empty UTF-8 database named name.
func (s *Server) CreateDB(name string) {
	s.tb.Helper()
	s.Exec("postgres", `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()+` ENCODING 'UTF8' TEMPLATE template0`)
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// childPIDs lists the processes whose parent is pid (from /proc).
func childPIDs(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}
