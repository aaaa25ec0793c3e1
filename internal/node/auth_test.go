package node

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"golang.org/x/crypto/ssh"
)

func TestAuthorizerDenialShownToUser(t *testing.T) {
	e := newEnv(t)
	login := currentLogin(t)
	reason := `login "` + login + `" is not allowed on node "web1" by your roles`
	var got AuthzRequest
	e.setAuthz(func(_ context.Context, req AuthzRequest) (*Permissions, error) {
		got = req
		return nil, errors.New(reason)
	})
	id := e.newIdentity(certOpts{principals: []string{login}})
	r := e.ssh(id, login, nil, "echo should-not-run")
	if r.code != 255 {
		t.Fatalf("exit %d, want 255", r.code)
	}
	if !strings.Contains(r.stderr, reason) {
		t.Errorf("stderr %q lacks the reason %q", r.stderr, reason)
	}
	if r.stdout != "" {
		t.Errorf("command ran: %q", r.stdout)
	}
	if got.Login != login || got.Cert == nil || got.Cert.KeyId != "alice" || got.RemoteAddr == nil {
		t.Errorf("Authorize got %+v", got)
	}
	e.audit.wait(t, audit.AuthAttempt, func(ev audit.Event) bool {
		return !ev.Success && ev.Error == reason && ev.User == "alice" && ev.Login == login && ev.Node == "web1"
	})
}

func TestCertificateChecks(t *testing.T) {
	e := newEnv(t)
	login := currentLogin(t)
	otherCA := newSigner(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		id         certOpts
		login      string
		sshOpts    []string
		wantOK     bool
		wantStderr string
	}{
		{name: "valid", id: certOpts{principals: []string{login}}, wantOK: true},
		{name: "other CA", id: certOpts{principals: []string{login}, ca: otherCA},
			wantStderr: "not signed by a trusted Warden authority"},
		{name: "expired", id: certOpts{principals: []string{login}, validAfter: time.Now().Add(-2 * time.Hour), ttl: time.Hour},
			wantStderr: "your certificate has expired"},
		{name: "not yet valid", id: certOpts{principals: []string{login}, validAfter: time.Now().Add(time.Hour)},
			wantStderr: "not valid yet"},
		{name: "wrong principal", id: certOpts{principals: []string{"someone-else"}},
			wantStderr: `login "` + login + `" is not allowed by your roles`},
		{name: "plain key", id: certOpts{}, wantStderr: "Permission denied"},
		{name: "rsa-sha2-512 cert", id: certOpts{principals: []string{login}, key: rsaKey}, wantOK: true,
			sshOpts: []string{"-o", "PubkeyAcceptedAlgorithms=rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-512"}},
		{name: "ssh-rsa (SHA-1) cert", id: certOpts{principals: []string{login}, key: rsaKey},
			sshOpts:    []string{"-o", "PubkeyAcceptedAlgorithms=ssh-rsa-cert-v01@openssh.com,ssh-rsa"},
			wantStderr: "Permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := e.newIdentity(tc.id)
			r := e.ssh(id, login, tc.sshOpts, "echo ok")
			if tc.wantOK {
				if r.code != 0 || r.stdout != "ok\n" {
					t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
				}
				return
			}
			if r.code != 255 || r.stdout != "" {
				t.Fatalf("exit %d stdout %q; want refusal", r.code, r.stdout)
			}
			if !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tc.wantStderr)
			}
			if tc.id.key == nil {
				// Every refusal except the algorithm one is audited by key.
				e.audit.wait(t, audit.AuthAttempt, func(ev audit.Event) bool {
					return !ev.Success && ev.Login == login && ev.Error != ""
				})
			}
		})
	}
}

// TestHostCertAsUserCert uses the x/crypto client: OpenSSH's client does not
// even offer a host certificate for user authentication.
func TestHostCertAsUserCert(t *testing.T) {
	e := newEnv(t)
	login := currentLogin(t)
	id := e.newIdentity(certOpts{principals: []string{login}, certType: ssh.HostCert})
	c, err := e.client(id, login)
	if err == nil {
		c.Close()
		t.Fatal("host certificate accepted as user certificate")
	}
	e.audit.wait(t, audit.AuthAttempt, func(ev audit.Event) bool {
		return !ev.Success && strings.Contains(ev.Error, "cert has type 2")
	})
}

func TestResolveLoginWhenNotRoot(t *testing.T) {
	e := newEnv(t)
	s := &Server{cfg: e.srv.cfg, uid: 1000, procUser: "svc"}
	if _, err := s.resolveLogin(context.Background(), "root"); err == nil ||
		err.Error() != "node runs as svc and cannot switch to login root" {
		t.Errorf("resolveLogin(root) = %v", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	e := newEnv(t)
	good := e.srv.cfg
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no host signers", func(c *Config) { c.HostSigners = nil }},
		{"no user CAs", func(c *Config) { c.UserCAs = nil }},
		{"no authorizer", func(c *Config) { c.Authorizer = nil }},
		{"no audit", func(c *Config) { c.Audit = nil }},
		{"no node name", func(c *Config) { c.NodeName = "" }},
		{"unknown session cgroups mode", func(c *Config) { c.SessionCgroups = "sometimes" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			if _, err := New(cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
	s, err := New(Config{HostSigners: good.HostSigners, UserCAs: good.UserCAs, Authorizer: good.Authorizer,
		Audit: good.Audit, NodeName: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.MaxAuthTries != defaultMaxAuthTries || s.cfg.MaxSessionsPerConn != defaultMaxSessionsPerConn ||
		s.cfg.HandshakeTimeout != defaultHandshakeTimeout || len(s.cfg.ChildCommand) != 1 {
		t.Errorf("defaults not applied: %+v", s.cfg)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
