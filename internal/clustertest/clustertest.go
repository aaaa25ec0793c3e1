// Package clustertest starts a whole Warden cluster (auth + proxy + node) in
// one process on loopback for end-to-end tests, and drives the real warden
// CLI against it.
package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/cli"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/service"
)

// Cluster is a running all-in-one cluster.
type Cluster struct {
	t       testing.TB
	DataDir string
	Proc    *service.Process
	Admin   *api.Client
}

// Options adjust the cluster.
type Options struct {
	NodeName   string
	NodeLabels map[string]string
	// NoNode runs auth and proxy only.
	NoNode bool
	// DataDir reuses a data directory (to restart a cluster).
	DataDir string
	// Proxy overrides proxy settings (listen address, limits).
	Proxy service.ProxyConfig
	// NodeListen also serves the in-process node directly (direct mode).
	NodeListen string
	// Auth overrides auth settings (notifications, TTLs).
	Auth service.AuthConfig
	// Storage chooses the storage (default: SQLite in the data directory).
	Storage service.StorageConfig
}

// New starts a cluster that is closed when the test ends.
func New(t testing.TB, opt Options) *Cluster {
	t.Helper()
	if opt.NodeName == "" {
		opt.NodeName = "node1"
	}
	dir := opt.DataDir
	if dir == "" {
		dir = t.TempDir()
		os.Chmod(dir, 0o700) // as warden start would make it (and say so)
	}
	if opt.Proxy.Listen == "" {
		opt.Proxy.Listen = "127.0.0.1:0"
	}
	if opt.Proxy.MetricsAddr == "" {
		opt.Proxy.MetricsAddr = "127.0.0.1:0"
	}
	cfg := &service.Config{
		ClusterName: "test",
		DataDir:     dir,
		Proxy:       opt.Proxy,
		Auth:        opt.Auth,
		Storage:     opt.Storage,
		Node:        nodeagent.Settings{Name: opt.NodeName, Labels: opt.NodeLabels, Listen: opt.NodeListen},
	}
	if opt.NoNode {
		cfg.Services = []string{service.Auth, service.Proxy}
	}
	p, err := service.Start(context.Background(), cfg, quietLogger(t))
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	admin, _, err := client.AdminClient(dir, t.TempDir())
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	t.Cleanup(admin.Close)
	c := &Cluster{t: t, DataDir: dir, Proc: p, Admin: admin}
	if !opt.NoNode {
		c.WaitForNodes(1)
	}
	return c
}

// StartNode joins a separate node agent with a fresh single-use token and
// the CA pin, as `warden start --services node` would. It stops at test end.
func (c *Cluster) StartNode(name string, labels map[string]string, opts ...func(*nodeagent.Config)) *nodeagent.Agent {
	c.t.Helper()
	ctx := context.Background()
	tok, err := c.Admin.CreateToken(ctx, auth.CreateTokenRequest{Type: "node", TTL: time.Minute})
	if err != nil {
		c.t.Fatal(err)
	}
	ping, err := c.Admin.Ping(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := nodeagent.Config{
		Settings: nodeagent.Settings{Name: name, Labels: labels, ProxyAddr: c.ProxyAddr(), Token: tok.Token, CAPin: ping.TLSCAFingerprint},
		DataDir:  c.t.TempDir(),
		Logger:   quietLogger(c.t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := nodeagent.Start(ctx, cfg)
	if err != nil {
		c.t.Fatalf("start node %s: %v", name, err)
	}
	c.t.Cleanup(func() { a.Close() })
	return a
}

// ApplyRoles applies role YAML through the CLI as the local admin.
func (c *Cluster) ApplyRoles(yaml string) {
	c.t.Helper()
	res := c.Warden(c.t.TempDir(), strings.NewReader(yaml), "apply", "-f", "-")
	if res.Code != 0 {
		c.t.Fatalf("apply roles: %s", res)
	}
}

// ProxyAddr is the proxy's address.
func (c *Cluster) ProxyAddr() string { return c.Proc.ProxyAddr() }

// MetricsURL is where the cluster serves its Prometheus metrics.
func (c *Cluster) MetricsURL() string { return "http://" + c.Proc.MetricsAddr() + "/metrics" }

// WaitForNodes waits until at least n nodes heartbeat.
func (c *Cluster) WaitForNodes(n int) {
	c.t.Helper()
	deadline := patience.Deadline(c.t)
	for {
		nodes, err := c.Admin.ListNodes(context.Background(), nil)
		if err == nil && len(nodes) >= n {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %d nodes: got %d (err %v)", n, len(nodes), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Result is the outcome of a CLI run.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Warden runs the warden CLI in-process with this cluster's data dir and the
// given profile home. stdin may be nil.
func (c *Cluster) Warden(home string, stdin io.Reader, args ...string) Result {
	c.t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	full := append([]string{"--data-dir", c.DataDir, "--home", home}, args...)
	ctx, cancel := context.WithDeadline(context.Background(), patience.Deadline(c.t))
	defer cancel()
	code := cli.RunIO(ctx, full, &cli.IO{In: stdin, Out: &out, Err: &errb})
	if ctx.Err() != nil {
		c.t.Fatalf("warden %s did not finish: %s", strings.Join(args, " "), errb.String())
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// User is a signed-up Warden user.
type User struct {
	Name, Password, TOTPSecret string
	// next is the next TOTP time step to use; steps may not be reused.
	next int64
}

// NextOTP returns a fresh TOTP code. The server accepts the current step
// ±1 and never the same step twice, so each call moves one step forward;
// up to two logins per 30 s window work without waiting. It never uses the
// previous step, which the server stops accepting the moment the next one
// begins: a code for the current or the next step stays good for at least
// 30 s, however slow the login that uses it.
func (u *User) NextOTP(t testing.TB) string {
	t.Helper()
	now := identity.TOTPStep(time.Now())
	if u.next < now {
		u.next = now
	}
	for u.next > now+1 {
		time.Sleep(time.Second)
		now = identity.TOTPStep(time.Now())
	}
	code, err := identity.TOTPCode(u.TOTPSecret, time.Unix(u.next*30, 0))
	if err != nil {
		t.Fatal(err)
	}
	u.next++
	return code
}

// AddUser creates a user through the admin API and completes the signup
// through the API, returning its credentials.
func (c *Cluster) AddUser(name string, roles, logins []string) *User {
	c.t.Helper()
	ctx := context.Background()
	inv, err := c.Admin.CreateUser(ctx, auth.CreateUserRequest{Name: name, Roles: roles, Logins: logins})
	if err != nil {
		c.t.Fatalf("create user %s: %v", name, err)
	}
	ch, err := c.Admin.BeginSignup(ctx, inv.Token)
	if err != nil {
		c.t.Fatalf("begin signup: %v", err)
	}
	u := &User{Name: name, Password: "correct horse battery " + name, TOTPSecret: ch.Secret}
	if _, err := c.Admin.CompleteSignup(ctx, auth.SignupRequest{Token: inv.Token, Password: u.Password, OTP: u.NextOTP(c.t)}); err != nil {
		c.t.Fatalf("complete signup: %v", err)
	}
	return u
}

// Login logs u in with the CLI into a new profile directory and returns it.
func (c *Cluster) Login(u *User, extra ...string) string {
	c.t.Helper()
	home := c.t.TempDir()
	args := append([]string{"login", "--proxy", c.ProxyAddr(), "--user", u.Name, "--password-stdin", "--otp", u.NextOTP(c.t)}, extra...)
	res := c.Warden(home, strings.NewReader(u.Password+"\n"), args...)
	if res.Code != 0 {
		c.t.Fatalf("warden login: code %d\nstdout: %s\nstderr: %s", res.Code, res.Stdout, res.Stderr)
	}
	return home
}

// SSHConfig writes `warden config ssh` output for a profile and returns the
// file path for `ssh -F`.
func (c *Cluster) SSHConfig(home string) string {
	c.t.Helper()
	path, err := c.sshConfig(home)
	if err != nil {
		c.t.Fatal(err)
	}
	return path
}

// sshConfig is SSHConfig, with an error for a profile whose certificates
// expired.
func (c *Cluster) sshConfig(home string) (string, error) {
	res := c.Warden(home, nil, "config", "ssh", "--binary", WardenBinary)
	if res.Code != 0 {
		return "", fmt.Errorf("warden config ssh: %s", res.Stderr)
	}
	path := filepath.Join(home, "ssh_config")
	return path, os.WriteFile(path, []byte(res.Stdout), 0o600)
}

// WardenBinary is the path of a real warden binary (for OpenSSH's
// ProxyCommand), set by BuildWarden.
var WardenBinary string

// BuildWarden builds cmd/warden into dir and sets WardenBinary.
func BuildWarden(dir string) error {
	out := filepath.Join(dir, "warden")
	cmd := exec.Command("go", "build", "-o", out, "github.com/warden-sh/warden/cmd/warden")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build warden: %v: %s", err, b)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	WardenBinary = out
	return nil
}

// EnsureOSUser creates a local OS user (tests run as root) if missing.
func EnsureOSUser(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.Command("id", name).Output(); err == nil {
		return
	}
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s (tests must run as root): %v: %s", name, err, out)
	}
}

// Run runs an external command and returns its result; one that does not
// finish within the test's patience fails the test.
func Run(t testing.TB, stdin io.Reader, name string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), patience.Deadline(t))
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish:\nstdout: %s\nstderr: %s", name, out.String(), errb.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// String formats a result for failure messages.
func (r Result) String() string {
	return fmt.Sprintf("code=%d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}
