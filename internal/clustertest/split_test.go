//go:build integration

package clustertest

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/storage/postgres/pgtest"
	"github.com/warden-sh/warden/internal/testkit"
	"github.com/warden-sh/warden/internal/wire"
)

// splitCluster is a deployment of separate processes, each on a host of
// its own (netLab): auth instances on one PostgreSQL database, proxies
// that run apart from auth, and nodes behind the proxies.
type splitCluster struct {
	t   *testing.T
	lab *netLab
	dir string
	// pgConn is the database as the lab's hosts reach it.
	pgConn, pgPassFile, signingKey, recordings string
	// pin is the cluster CA's fingerprint.
	pin string
	// authExtra is more of auth's section of the auth instances' config
	// (YAML flow mapping entries, e.g. "webauthn: {...}").
	authExtra string
}

const (
	splitAuthPort  = 3025
	splitProxyPort = 3080
)

func newSplitCluster(t *testing.T) *splitCluster {
	t.Helper()
	lab := newNetLab(t)
	db := pgtest.New(t)
	// PostgreSQL listens on the test's loopback: the lab's hosts reach it
	// through a forwarder on the test's address in the lab.
	forwardTCP(t, lab.Gateway()+":5432", net2(db.Config.Host, int(db.Config.Port)))
	dir := t.TempDir()
	s := &splitCluster{t: t, lab: lab, dir: dir,
		pgConn:     "postgres://" + db.Config.User + "@" + lab.Gateway() + ":5432/" + db.Name + "?sslmode=disable",
		pgPassFile: filepath.Join(dir, "pgpass"), signingKey: filepath.Join(dir, "audit-signing-key.pem"),
		recordings: filepath.Join(dir, "recordings")}
	if err := os.WriteFile(s.pgPassFile, []byte(db.Config.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func net2(host string, port int) string { return host + ":" + strconv.Itoa(port) }

// splitAuth is one auth instance.
type splitAuth struct {
	host    *labHost
	proc    *labProcess
	dataDir string
	admin   *api.Client
}

// Addr is the auth instance's API address.
func (a *splitAuth) Addr() string { return a.host.Addr(splitAuthPort) }

// StartAuth starts an auth instance (services: [auth]) on a host of its
// own and waits until its admin identity works.
func (s *splitCluster) StartAuth(name string) *splitAuth {
	s.t.Helper()
	h := s.lab.Host(name)
	a := &splitAuth{host: h, dataDir: filepath.Join(s.dir, name)}
	cfg := "cluster_name: split\nservices: [auth]\n" +
		"storage: {type: postgres, conn: \"" + s.pgConn + "\", password_file: \"" + s.pgPassFile + "\", recordings_dir: \"" + s.recordings + "\"}\n" +
		"auth: {listen: \"" + a.Addr() + "\", audit_signing_key: \"" + s.signingKey + "\", checkpoint_interval: 1s" + s.authExtra + "}\n" +
		"proxy: {metrics_addr: \"off\"}\n"
	path := filepath.Join(s.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		s.t.Fatal(err)
	}
	a.proc = h.Start(s.t, WardenBinary, "start", "-c", path, "--data-dir", a.dataDir)
	var id *idfile.File
	testkit.WaitFor(s.t, name+" to write its admin identity", func() bool {
		var err error
		id, err = idfile.Read(idfile.AdminPath(a.dataDir))
		return err == nil
	})
	cert, err := id.TLSCertificate()
	if err != nil {
		s.t.Fatal(err)
	}
	pool, err := id.RootCAs()
	if err != nil {
		s.t.Fatal(err)
	}
	a.admin, err = api.NewClient(api.ClientConfig{Addr: a.Addr(), RootCAs: pool, Certificate: cert})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(a.admin.Close)
	testkit.WaitFor(s.t, name+"'s API", func() bool {
		ping, err := a.admin.Ping(context.Background())
		if err == nil {
			s.pin = ping.TLSCAFingerprint
		}
		return err == nil
	})
	return a
}

// token makes a join token through auth a.
func (s *splitCluster) token(a *splitAuth, typ string) string {
	s.t.Helper()
	tok, err := a.admin.CreateToken(context.Background(), auth.CreateTokenRequest{Type: typ, TTL: time.Hour})
	if err != nil {
		s.t.Fatalf("create %s token: %v", typ, err)
	}
	path := filepath.Join(s.dir, typ+"-token-"+tok.Token[:8])
	if err := os.WriteFile(path, []byte(tok.Token+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// splitProxy is one proxy running apart from auth.
type splitProxyProc struct {
	host *labHost
	proc *labProcess
}

// Addr is the proxy's public address.
func (p *splitProxyProc) Addr() string { return p.host.Addr(splitProxyPort) }

// StartProxy joins a proxy through auth via (a proxy token), calling the
// auth instances in the order given.
func (s *splitCluster) StartProxy(name string, via *splitAuth, auths ...*splitAuth) *splitProxyProc {
	s.t.Helper()
	h := s.lab.Host(name)
	p := &splitProxyProc{host: h}
	args := []string{"start", "--services", "proxy", "--proxy-listen", p.Addr(), "--metrics-addr", "off",
		"--token-file", s.token(via, wire.TokenTypeProxy), "--ca-pin", s.pin, "--data-dir", filepath.Join(s.dir, name), "--name", name}
	for _, a := range auths {
		args = append(args, "--auth-server", a.Addr())
	}
	p.proc = h.Start(s.t, WardenBinary, args...)
	p.proc.waitOutput(s.t, "is running at")
	return p
}

// StartNode joins a node through auth via, its tunnel to proxy p.
func (s *splitCluster) StartNode(name string, via *splitAuth, p *splitProxyProc) *labProcess {
	s.t.Helper()
	h := s.lab.Host(name)
	proc := h.Start(s.t, WardenBinary, "start", "--services", "node", "--proxy", p.Addr(), "--name", name,
		"--token-file", s.token(via, wire.TokenTypeNode), "--ca-pin", s.pin, "--data-dir", filepath.Join(s.dir, name))
	proc.waitOutput(s.t, "tunnel to proxy up")
	return proc
}

func (p *labProcess) waitOutput(t *testing.T, want string) {
	t.Helper()
	testkit.WaitFor(t, p.name+" to print "+strconv.Quote(want), func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s ended:\n%s", p.name, p.out.String())
		default:
		}
		return strings.Contains(p.out.String(), want)
	})
}

// AddUser makes and signs up a user through auth a.
func (s *splitCluster) AddUser(a *splitAuth, name string, roles, logins []string) *User {
	s.t.Helper()
	ctx := context.Background()
	inv, err := a.admin.CreateUser(ctx, auth.CreateUserRequest{Name: name, Roles: roles, Logins: logins})
	if err != nil {
		s.t.Fatalf("create user %s: %v", name, err)
	}
	ch, err := a.admin.BeginSignup(ctx, inv.Token)
	if err != nil {
		s.t.Fatalf("begin signup: %v", err)
	}
	u := &User{Name: name, Password: "correct horse battery " + name, TOTPSecret: ch.Secret}
	if _, err := a.admin.CompleteSignup(ctx, auth.SignupRequest{Token: inv.Token, Password: u.Password, OTP: u.NextOTP(s.t)}); err != nil {
		s.t.Fatalf("complete signup: %v", err)
	}
	return u
}

// Login logs u in through proxy p with the warden binary and writes the
// OpenSSH configuration for the profile; it returns the ssh_config path.
func (s *splitCluster) Login(u *User, p *splitProxyProc) string {
	s.t.Helper()
	home := s.t.TempDir()
	r := Run(s.t, strings.NewReader(u.Password+"\n"), WardenBinary, "--home", home, "login", "--proxy", p.Addr(),
		"--ca-pin", s.pin, "--user", u.Name, "--password-stdin", "--otp", u.NextOTP(s.t))
	if r.Code != 0 {
		s.t.Fatalf("warden login through %s: %s", p.host.Name, r)
	}
	cfg := Run(s.t, nil, WardenBinary, "--home", home, "config", "ssh", "--binary", WardenBinary)
	if cfg.Code != 0 {
		s.t.Fatalf("warden config ssh through %s: %s", p.host.Name, cfg)
	}
	path := filepath.Join(home, "ssh_config")
	if err := os.WriteFile(path, []byte(cfg.Stdout), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// adminCLI runs the warden binary with auth a's admin identity.
func (s *splitCluster) adminCLI(a *splitAuth, args ...string) Result {
	s.t.Helper()
	return Run(s.t, nil, WardenBinary, append([]string{"--data-dir", a.dataDir, "--home", s.t.TempDir()}, args...)...)
}

// newSplitWithNodeA is a split cluster of one auth (auth-a), one proxy
// (proxy-a) and node-a behind it, with the tests' OS login.
func newSplitWithNodeA(t *testing.T) (*splitCluster, *splitAuth, *splitProxyProc) {
	t.Helper()
	EnsureOSUser(t, osLogin)
	s := newSplitCluster(t)
	authA := s.StartAuth("auth-a")
	proxyA := s.StartProxy("proxy-a", authA, authA)
	s.StartNode("node-a", authA, proxyA)
	return s, authA, proxyA
}

// apply applies yaml (roles, connectors) with auth a's admin identity;
// what names it in the test's failure.
func (s *splitCluster) apply(a *splitAuth, what, yaml string) {
	s.t.Helper()
	r := Run(s.t, strings.NewReader(yaml), WardenBinary, "--data-dir", a.dataDir, "--home", s.t.TempDir(), "apply", "-f", "-")
	if r.Code != 0 {
		s.t.Fatalf(what+": %s", r)
	}
}

// waitNode waits until auth a has the node called name registered.
func (s *splitCluster) waitNode(a *splitAuth, name string) {
	s.t.Helper()
	testkit.WaitFor(s.t, name+" registered with auth", func() bool {
		nodes, err := a.admin.ListNodes(context.Background(), nil)
		for _, n := range nodes {
			if err == nil && n.Name == name {
				return true
			}
		}
		return false
	})
}

// endsWithin waits up to d for the live session p to end and returns its
// result and how long it took from start.
func endsWithin(t *testing.T, p *bgProcess, start time.Time, d time.Duration) (Result, time.Duration, bool) {
	t.Helper()
	select {
	case code := <-p.done:
		return Result{Stdout: p.out.String(), Stderr: p.err.String(), Code: code}, time.Since(start), true
	case <-time.After(time.Until(start.Add(d))):
		return Result{Stdout: p.out.String(), Stderr: p.err.String()}, time.Since(start), false
	}
}

// TestSplitAuthAndProxyProcesses: two auth instances on one PostgreSQL
// database and two proxies, each a separate `warden start` process on a
// host of its own (a network namespace with its own address), with a node
// behind each proxy. The proxies join with proxy tokens and call auth over
// mutual TLS; users log in and reach nodes through either proxy with the
// real OpenSSH client; each auth instance lists the nodes of both proxies.
// A lock made through auth A ends a live session on the node behind proxy
// B within a second, and removing the user through auth B ends a live
// session on the node behind proxy A within a second.
func TestSplitAuthAndProxyProcesses(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	s := newSplitCluster(t)
	authA := s.StartAuth("auth-a")
	authB := s.StartAuth("auth-b")
	proxyA := s.StartProxy("proxy-a", authA, authA, authB)
	proxyB := s.StartProxy("proxy-b", authB, authB, authA)
	s.StartNode("node-a", authA, proxyA)
	s.StartNode("node-b", authB, proxyB)

	// Each auth instance lists the nodes of both proxies.
	for _, a := range []*splitAuth{authA, authB} {
		testkit.WaitFor(t, "both nodes listed through "+a.host.Name, func() bool {
			nodes, err := a.admin.ListNodes(context.Background(), nil)
			return err == nil && len(nodes) == 2
		})
	}

	u := s.AddUser(authA, "splituser", []string{"access"}, []string{osLogin})
	cfgA := s.Login(u, proxyA)
	cfgB := s.Login(u, proxyB)
	for cfg, node := range map[string]string{cfgA: "node-a", cfgB: "node-b"} {
		// With a terminal: such sessions are recorded.
		if r := Run(t, nil, "ssh", sshArgs(cfg, "-tt", osLogin+"@"+node, "echo", "hello-from-"+node)...); r.Code != 0 || !strings.Contains(r.Stdout, "hello-from-"+node) {
			t.Fatalf("ssh to %s: %s", node, r)
		}
	}

	// A client cannot make a proxy speak for someone else: the forwarding
	// headers it sends are replaced by what the proxy verified (here:
	// no certificate), so a forged admin certificate gets nowhere.
	s.forgedThroughProxy(authA, proxyB)

	// The nodes' recordings and audit events reached auth through the
	// proxies: each session's recording is complete, listed through auth B,
	// and the one audit chain verifies through auth A.
	for _, node := range []string{"node-a", "node-b"} {
		testkit.WaitFor(t, "a complete recording of the session on "+node, func() bool {
			recs, err := authB.admin.ListRecordings(context.Background(), "splituser", node, time.Time{})
			return err == nil && len(recs) == 1 && recs[0].Complete
		})
		evs, err := authB.admin.SearchAudit(context.Background(), audit.Query{Type: audit.SessionStart, Node: node, Limit: 10})
		if err != nil || len(evs) != 1 || evs[0].User != "splituser" {
			t.Fatalf("session.start of %s in the audit log: %v %+v", node, err, evs)
		}
	}
	var v Result
	testkit.WaitFor(t, "audit verify through auth A", func() bool {
		v = s.adminCLI(authA, "audit", "verify")
		return v.Code == 0 && strings.Contains(v.Stdout, "signed: events up to seq")
	})
	if !strings.Contains(v.Stdout, "intact") {
		t.Fatalf("audit verify: %s", v)
	}

	// A lock through auth A ends the live session behind proxy B.
	live, err := startLive(t, sshArgs(cfgB, osLogin+"@node-b", liveCommand))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	id := lockID(t, s.adminCLI(authA, "lock", "--user", "splituser", "--message", "locked-through-auth-a"))
	r, took, ended := endsWithin(t, live, start, time.Second)
	if !ended {
		t.Fatalf("the session on node-b behind proxy B still runs %s after the lock through auth A", took)
	}
	if r.Code == 0 || !strings.Contains(r.Stderr, "locked-through-auth-a") {
		t.Fatalf("the session behind proxy B did not end by the lock: %s", r)
	}
	t.Logf("a lock through auth A ended a session behind proxy B %s after the lock command started", took.Round(time.Millisecond))
	if r := Run(t, nil, "ssh", sshArgs(cfgB, osLogin+"@node-b", "true")...); r.Code == 0 {
		t.Fatalf("a new session behind proxy B while locked: %s", r)
	}
	if r := s.adminCLI(authB, "unlock", id); r.Code != 0 {
		t.Fatalf("unlock through auth B: %s", r)
	}
	testkit.WaitFor(t, "ssh through proxy A after the unlock", func() bool {
		return Run(t, nil, "ssh", sshArgs(cfgA, osLogin+"@node-a", "true")...).Code == 0
	})

	// Removing the user through auth B ends the live session behind proxy A.
	live, err = startLive(t, sshArgs(cfgA, osLogin+"@node-a", liveCommand))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if r := s.adminCLI(authB, "users", "rm", "splituser"); r.Code != 0 {
		t.Fatalf("users rm through auth B: %s", r)
	}
	r, took, ended = endsWithin(t, live, start, time.Second)
	if !ended {
		t.Fatalf("the session on node-a behind proxy A still runs %s after the removal through auth B", took)
	}
	if r.Code == 0 {
		t.Fatalf("the session behind proxy A did not end by the removal: %s", r)
	}
	t.Logf("removing the user through auth B ended a session behind proxy A %s after the command started: %s", took.Round(time.Millisecond),
		strings.TrimSpace(r.Stderr))
	if r := Run(t, nil, "ssh", sshArgs(cfgA, osLogin+"@node-a", "true")...); r.Code == 0 {
		t.Fatalf("a removed user reached node-a through proxy A: %s", r)
	}

	// A lock on proxy B (by its id, through auth A) revokes it: its users
	// are refused, through proxy A they still get in.
	u2 := s.AddUser(authA, "splituser2", []string{"access"}, []string{osLogin})
	cfgA2, cfgB2 := s.Login(u2, proxyA), s.Login(u2, proxyB)
	id2, err := idfile.Read(filepath.Join(s.dir, "proxy-b", "proxy-identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	if r := Run(t, nil, "ssh", sshArgs(cfgB2, osLogin+"@node-b", "true")...); r.Code != 0 {
		t.Fatalf("through proxy B before it was revoked: %s", r)
	}
	lockID(t, s.adminCLI(authA, "lock", "--node", id2.NodeID, "--message", "proxy-b-revoked"))
	testkit.WaitFor(t, "proxy B to refuse its users", func() bool {
		return Run(t, nil, "ssh", sshArgs(cfgB2, osLogin+"@node-b", "true")...).Code != 0
	})
	if r := Run(t, nil, "ssh", sshArgs(cfgA2, osLogin+"@node-a", "true")...); r.Code != 0 {
		t.Fatalf("through proxy A after proxy B was revoked: %s", r)
	}
}

// forgedThroughProxy sends, through proxy p and without a client
// certificate, a request whose forwarding header names auth a's admin
// certificate: it must be refused as unauthenticated.
func (s *splitCluster) forgedThroughProxy(a *splitAuth, p *splitProxyProc) {
	s.t.Helper()
	id, err := idfile.Read(idfile.AdminPath(a.dataDir))
	if err != nil {
		s.t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(id.TLSCert))
	pool, err := id.RootCAs()
	if err != nil || block == nil {
		s.t.Fatalf("admin identity: %v", err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, hdr := range []string{api.HeaderClientCert, api.HeaderClientAddr} {
		req, err := http.NewRequest(http.MethodGet, "https://"+p.Addr()+"/v1/whoami", nil)
		if err != nil {
			s.t.Fatal(err)
		}
		req.Header.Set(api.HeaderClientCert, base64.StdEncoding.EncodeToString(block.Bytes))
		if hdr == api.HeaderClientAddr {
			req.Header.Set(api.HeaderClientAddr, "192.0.2.7")
		}
		resp, err := hc.Do(req)
		if err != nil {
			s.t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			s.t.Fatalf("a forged forwarding header through %s: %s %s", p.host.Name, resp.Status, body)
		}
	}
}
