package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/recording"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
)

// childDir holds a world-readable copy of the test binary so that SFTP
// children can be re-executed as unprivileged users (go test's build
// directory is private to root).
var (
	childOnce sync.Once
	childDir  string
	childExe  string
	childErr  error
)

func TestMain(m *testing.M) {
	MaybeRunChild()
	// The low-priority recording threads live as long as the process.
	code := patience.LeakCheck(m.Run(), goleak.IgnoreAnyFunction(recording.PoolFunction))
	if childDir != "" {
		os.RemoveAll(childDir)
	}
	os.Exit(code)
}

func childCommand(t testing.TB) []string {
	t.Helper()
	childOnce.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			childErr = err
			return
		}
		dir, err := os.MkdirTemp("", "warden-node-child-")
		if err != nil {
			childErr = err
			return
		}
		childDir = dir
		if err := os.Chmod(dir, 0o755); err != nil {
			childErr = err
			return
		}
		data, err := os.ReadFile(exe)
		if err != nil {
			childErr = err
			return
		}
		childExe = filepath.Join(dir, "node.test")
		childErr = os.WriteFile(childExe, data, 0o755)
	})
	if childErr != nil {
		t.Fatalf("prepare child binary: %v", childErr)
	}
	return []string{childExe}
}

// recorder is an in-memory audit.Emitter.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Emit(_ context.Context, ev audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) find(name string, pred func(audit.Event) bool) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, ev := range r.events {
		if ev.Event == name && (pred == nil || pred(ev)) {
			out = append(out, ev)
		}
	}
	return out
}

// wait polls for an event: some are emitted just after the client exits.
func (r *recorder) wait(t testing.TB, name string, pred func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := patience.Deadline(t)
	for {
		if evs := r.find(name, pred); len(evs) > 0 {
			return evs[0]
		}
		if time.Now().After(deadline) {
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("no %s audit event matched; have %+v", name, r.events)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type authzFunc func(ctx context.Context, req AuthzRequest) (*Permissions, error)

func (f authzFunc) Authorize(ctx context.Context, req AuthzRequest) (*Permissions, error) {
	return f(ctx, req)
}

// allowAll grants everything until the certificate expires.
func allowAll(_ context.Context, req AuthzRequest) (*Permissions, error) {
	return &Permissions{
		User: req.Cert.KeyId, Roles: []string{"test"},
		PortForwarding: true, FileTransfer: true, PTY: true,
		Expires: time.Unix(int64(req.Cert.ValidBefore), 0),
	}, nil
}

// env is a running node server with its CAs and a client directory.
type env struct {
	t       testing.TB
	srv     *Server
	addr    *net.TCPAddr
	userCA  ssh.Signer
	hostCA  ssh.Signer
	audit   *recorder
	dir     string
	known   string
	authz   authzFunc
	authzMu sync.Mutex
}

type envOption func(*Config)

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, userCA: newSigner(t), hostCA: newSigner(t), audit: &recorder{}, dir: t.TempDir(), authz: allowAll}

	hostKey := newSigner(t)
	hostCert := &ssh.Certificate{
		Key: hostKey.PublicKey(), CertType: ssh.HostCert, KeyId: "node-test",
		ValidPrincipals: []string{"127.0.0.1", "localhost"},
		ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
		ValidBefore:     uint64(time.Now().Add(24 * time.Hour).Unix()),
	}
	if err := hostCert.SignCert(rand.Reader, e.hostCA); err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewCertSigner(hostCert, hostKey)
	if err != nil {
		t.Fatal(err)
	}
	e.known = filepath.Join(e.dir, "known_hosts")
	line := "@cert-authority * " + string(ssh.MarshalAuthorizedKey(e.hostCA.PublicKey()))
	if err := os.WriteFile(e.known, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := Config{
		HostSigners: []ssh.Signer{hostSigner},
		UserCAs:     func() []ssh.PublicKey { return []ssh.PublicKey{e.userCA.PublicKey()} },
		Authorizer: authzFunc(func(ctx context.Context, req AuthzRequest) (*Permissions, error) {
			e.authzMu.Lock()
			f := e.authz
			e.authzMu.Unlock()
			return f(ctx, req)
		}),
		Audit:        e.audit,
		NodeName:     "web1",
		NodeID:       "node-1",
		ChildCommand: childCommand(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().(*net.TCPAddr)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Close", err)
		}
	})
	return e
}

func (e *env) setAuthz(f authzFunc) {
	e.authzMu.Lock()
	defer e.authzMu.Unlock()
	e.authz = f
}

// certOpts describe a client certificate.
type certOpts struct {
	principals []string
	ttl        time.Duration
	validAfter time.Time
	certType   uint32
	ca         ssh.Signer // default e.userCA
	key        any        // private key; default a new ed25519 key
	keyID      string     // the user; default alice
}

// identity is a client key and certificate on disk.
type identity struct {
	keyPath  string
	certPath string // "" for a plain key
	signer   ssh.Signer
	cert     *ssh.Certificate
}

func (e *env) newIdentity(o certOpts) identity {
	t := e.t
	t.Helper()
	priv := o.key
	if priv == nil {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(e.dir, "id-")
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	id := identity{keyPath: filepath.Join(dir, "key"), signer: signer}
	if err := os.WriteFile(id.keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if o.principals == nil {
		return id // plain key
	}
	if o.ttl == 0 {
		o.ttl = time.Hour
	}
	if o.validAfter.IsZero() {
		o.validAfter = time.Now().Add(-time.Minute)
	}
	if o.certType == 0 {
		o.certType = ssh.UserCert
	}
	if o.ca == nil {
		o.ca = e.userCA
	}
	if o.keyID == "" {
		o.keyID = "alice"
	}
	cert := &ssh.Certificate{
		Key: signer.PublicKey(), CertType: o.certType, KeyId: o.keyID, Serial: 7,
		ValidPrincipals: o.principals,
		ValidAfter:      uint64(o.validAfter.Unix()),
		ValidBefore:     uint64(o.validAfter.Add(o.ttl).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{
			"permit-pty": "", "permit-port-forwarding": "", "permit-agent-forwarding": "",
		}},
	}
	if o.certType == ssh.HostCert {
		cert.Extensions = nil
	}
	if err := cert.SignCert(rand.Reader, o.ca); err != nil {
		t.Fatal(err)
	}
	// Not named key-cert.pub, so ssh does not pick it up on its own.
	id.certPath = filepath.Join(dir, "cert.pub")
	if err := os.WriteFile(id.certPath, ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	id.cert = cert
	return id
}

// sshArgs are the OpenSSH options shared by ssh, scp and sftp.
func (e *env) sshOpts(id identity) []string {
	args := []string{
		"-F", "/dev/null",
		"-o", "UserKnownHostsFile=" + e.known,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "BatchMode=yes",
		"-o", "PasswordAuthentication=no",
		"-o", "KbdInteractiveAuthentication=no",
		"-o", "ConnectTimeout=" + strconv.Itoa(int(patience.Left(e.t).Seconds())),
		"-i", id.keyPath,
	}
	if id.certPath != "" {
		args = append(args, "-o", "CertificateFile="+id.certPath)
	}
	return args
}

type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// run runs an OpenSSH tool (ssh, scp, sftp) and returns its output and exit
// code. stdin may be nil.
func (e *env) run(stdin io.Reader, tool string, args ...string) result {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), patience.Deadline(t))
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", tool, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s timed out; stderr: %s", tool, r.stderr)
	}
	return r
}

// ssh runs `ssh [extra...] login@127.0.0.1 command...`.
func (e *env) ssh(id identity, login string, extra []string, command ...string) result {
	e.t.Helper()
	args := append(e.sshOpts(id), "-p", strconv.Itoa(e.addr.Port))
	args = append(args, extra...)
	args = append(args, login+"@127.0.0.1")
	args = append(args, command...)
	return e.run(nil, "ssh", args...)
}

// client dials with x/crypto/ssh using id.
func (e *env) client(id identity, login string) (*ssh.Client, error) {
	signer := id.signer
	if id.cert != nil {
		cs, err := ssh.NewCertSigner(id.cert, id.signer)
		if err != nil {
			return nil, err
		}
		signer = cs
	}
	checker := &ssh.CertChecker{
		IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
			return bytes.Equal(k.Marshal(), e.hostCA.PublicKey().Marshal())
		},
	}
	return ssh.Dial("tcp", e.addr.String(), &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: checker.CheckHostKey,
		Timeout:         patience.Left(e.t),
	})
}

// connect opens a client connection as login with a fresh certificate for
// it, closed when the test ends.
func (e *env) connect(t testing.TB, login string) *ssh.Client {
	t.Helper()
	c, err := e.client(e.newIdentity(certOpts{principals: []string{login}}), login)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func currentLogin(t testing.TB) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}
