package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/testkit"
)

// sshdAlias is the host name the baseline sshd's host certificate is for.
const sshdAlias = "sshd-bench"

// startSSHD starts the baseline sshd (testkit.StartSSHD): stock sshd on a
// loopback port that trusts the Warden user CA and presents a host
// certificate from the Warden host CA, so the same Warden login and
// known_hosts work for it and for Warden. Its configuration is OpenSSH's
// compiled-in defaults (UsePAM no, the default cipher and kex order) plus
// what certificate login needs, and room for the benchmarks' concurrent
// connections and sessions; Warden does no PAM either.
func startSSHD(tb testing.TB, a *ca.Authority) *testkit.SSHD {
	tb.Helper()
	return testkit.StartSSHD(tb, testkit.SSHDOptions{
		UserCAs: []ssh.PublicKey{a.UserCAPublicKey()},
		HostCert: func(key ssh.PublicKey) (*ssh.Certificate, error) {
			return a.IssueHost(ca.HostCertRequest{PublicKey: key, HostID: sshdAlias,
				Principals: []string{sshdAlias}, TTL: 24 * time.Hour})
		},
		Config: []string{"LogLevel ERROR", "MaxStartups 200", "MaxSessions 100"},
	})
}

// ensureBenchUser creates the benchmark's OS user (shell /bin/sh) and
// unlocks it without giving it a password ("*"): with UsePAM no, sshd
// refuses accounts whose password field is locked ("!"), as useradd leaves
// it; Warden does not look at that field.
func ensureBenchUser(tb testing.TB) {
	tb.Helper()
	clustertest.EnsureOSUser(tb, osUser)
	if out, err := exec.Command("usermod", "-p", "*", osUser).CombinedOutput(); err != nil {
		tb.Fatalf("usermod -p '*' %s: %v: %s", osUser, err, out)
	}
}

func writeFile(tb testing.TB, path string, data []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		tb.Fatal(err)
	}
}

// sshIdentity is what the OpenSSH client logs in with.
type sshIdentity struct {
	Key, Cert, KnownHosts string
}

func profileIdentity(p *client.Profile) sshIdentity {
	return sshIdentity{Key: p.KeyPath(), Cert: p.CertPath(), KnownHosts: p.KnownHostsPath()}
}

// throwawayIdentity signs the profile's key with authority a (not the
// cluster's: a separate warden process keeps its CA keys to itself) and
// writes a known_hosts trusting a's host CA, for a baseline sshd started
// with a.
func throwawayIdentity(tb testing.TB, a *ca.Authority, p *client.Profile) sshIdentity {
	tb.Helper()
	signer, _, err := p.Signer()
	if err != nil {
		tb.Fatal(err)
	}
	pub := signer.PublicKey()
	if c, ok := pub.(*ssh.Certificate); ok {
		pub = c.Key
	}
	cert, err := a.IssueUser(ca.UserCertRequest{PublicKey: pub, Username: p.User,
		Principals: []string{osUser, ca.InternalPrincipalPrefix + p.User}, TTL: time.Hour, PermitPTY: true})
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	id := sshIdentity{Key: p.KeyPath(), Cert: filepath.Join(dir, "cert.pub"), KnownHosts: filepath.Join(dir, "known_hosts")}
	writeFile(tb, id.Cert, ssh.MarshalAuthorizedKey(cert), 0o600)
	writeFile(tb, id.KnownHosts, []byte("@cert-authority * "+string(ssh.MarshalAuthorizedKey(a.HostCAPublicKey()))), 0o600)
	return id
}

// sshHost is one Host block of the benchmark's ssh_config.
type sshHost struct {
	Alias, HostName string
	Port            int
	// HostKeyAlias is the name the host certificate is checked against.
	HostKeyAlias string
	ProxyJump    string
}

// writeSSHConfig writes an ssh_config in which every host uses the Warden
// profile's key, certificate and known_hosts (@cert-authority for the
// Warden host CA), with identical options for all paths. Ciphers, MACs and
// key exchange are left at OpenSSH's defaults.
func writeSSHConfig(tb testing.TB, id sshIdentity, hosts []sshHost) string {
	tb.Helper()
	var b strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&b, "Host %s\n", h.Alias)
		if h.HostName != "" {
			fmt.Fprintf(&b, "    HostName %s\n", h.HostName)
		}
		if h.Port != 0 {
			fmt.Fprintf(&b, "    Port %d\n", h.Port)
		}
		if h.HostKeyAlias != "" {
			fmt.Fprintf(&b, "    HostKeyAlias %s\n", h.HostKeyAlias)
		}
		if h.ProxyJump != "" {
			fmt.Fprintf(&b, "    ProxyJump %s\n", h.ProxyJump)
		}
	}
	fmt.Fprintf(&b, `Host *
    User %s
    IdentityFile %s
    CertificateFile %s
    IdentitiesOnly yes
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 20
    ControlMaster no
    ControlPath none
    LogLevel ERROR
`, osUser, id.Key, id.Cert, id.KnownHosts)
	path := filepath.Join(tb.TempDir(), "ssh_config")
	writeFile(tb, path, []byte(b.String()), 0o600)
	return path
}
