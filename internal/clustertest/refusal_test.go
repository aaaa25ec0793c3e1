//go:build integration

package clustertest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/testkit"
)

// openSSHNoise is what OpenSSH says when a ProxyCommand gives it no
// connection: it hides the reason the user needs under noise.
var openSSHNoise = []string{"mm_receive_fd", "proxy dialer did not pass back a connection", "kex_exchange_identification"}

// TestProxyRefusalsReachOpenSSH: every refusal at the proxy reaches the user
// of the real OpenSSH client with its reason: through the ProxyCommand that
// `warden config ssh` writes (fd passing), the relaying ProxyCommand, and
// `ssh -J` (at authentication and at the jump).
func TestProxyRefusalsReachOpenSSH(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "prod1"})
	u := c.AddUser("contractor", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	jcfg := jumpConfig(t, c, home)
	key := filepath.Join(home, "key")
	relay := "ProxyCommand=" + WardenBinary + " --home " + home + " proxy ssh %r@%h:%p"

	check := func(t *testing.T, r Result, reason string, clean bool) {
		t.Helper()
		if r.Code == 0 {
			t.Fatalf("not refused: %s", r)
		}
		if !strings.Contains(r.Stderr, reason) {
			t.Fatalf("stderr lacks the reason %q:\n%s", reason, r.Stderr)
		}
		if clean {
			for _, n := range openSSHNoise {
				if strings.Contains(r.Stderr, n) {
					t.Errorf("stderr has OpenSSH's %q:\n%s", n, r.Stderr)
				}
			}
		}
		t.Logf("stderr:\n%s", r.Stderr)
	}

	t.Run("unknown node", func(t *testing.T) {
		r := Run(t, nil, "ssh", sshArgs(cfg, "-o", "ProxyCommand="+WardenBinary+" --home "+home+" proxy ssh --fdpass %r@nope:%p", osLogin+"@prod1", "true")...)
		check(t, r, `warden: cannot reach nope through the proxy: node "nope" not found (nodes you can access: prod1)`, true)
		r = Run(t, nil, "ssh", sshArgs(cfg, "-o", "ProxyUseFdpass=no", "-o", "ProxyCommand="+WardenBinary+" --home "+home+" proxy ssh %r@nope:%p", osLogin+"@prod1", "true")...)
		check(t, r, `node "nope" not found`, true)
		r = Run(t, nil, "ssh", sshArgs(jcfg, "-J", "wjump", osLogin+"@nope", "true")...)
		check(t, r, `warden: node "nope" not found (nodes you can access: prod1)`, true)
	})
	t.Run("certificates refused at the jump", func(t *testing.T) {
		other, err := ca.GenerateKeys("other")
		if err != nil {
			t.Fatal(err)
		}
		foreign := issueWith(t, other, key, osLogin, time.Hour)
		r := Run(t, nil, "ssh", sshArgs(jumpConfigWith(t, c, home, foreign), "-J", "wjump", osLogin+"@prod1", "true")...)
		check(t, r, "warden: the certificate is not signed by this Warden cluster (run warden login)", false)
		expired := issueWithAuthority(t, c, key, osLogin, time.Second)
		until := time.Unix(int64(readCert(t, expired).ValidBefore), 0)
		testkit.WaitFor(t, "the certificate to expire", func() bool { return time.Now().After(until) })
		r = Run(t, nil, "ssh", sshArgs(jumpConfigWith(t, c, home, expired), "-J", "wjump", osLogin+"@prod1", "true")...)
		check(t, r, "warden: your certificate has expired; run warden login", false)
	})
	t.Run("locked", func(t *testing.T) {
		admin := t.TempDir()
		lockID(t, c.Warden(admin, nil, "lock", "--user", "contractor", "--ttl", "10m", "--message", "investigating"))
		reason := "access is locked (user=contractor): investigating"
		check(t, Run(t, nil, "ssh", sshArgs(cfg, osLogin+"@prod1", "true")...), "warden: cannot reach prod1 through the proxy: "+reason, true)
		check(t, Run(t, nil, "ssh", sshArgs(cfg, "-o", "ProxyUseFdpass=no", "-o", relay, osLogin+"@prod1", "true")...), reason, true)
		check(t, Run(t, nil, "ssh", sshArgs(jcfg, "-J", "wjump", osLogin+"@prod1", "true")...), "warden: "+reason, true)
		// warden proxy ssh run by hand (not by ssh) still says it plainly.
		r := c.Warden(home, nil, "proxy", "ssh", osLogin+"@prod1:22")
		if r.Code == 0 || !strings.Contains(r.Stderr, reason) {
			t.Fatalf("warden proxy ssh: %s", r)
		}
	})
}

func readCert(t *testing.T, path string) *ssh.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ssh.Certificate)
}
