//go:build integration

package clustertest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/testkit"
)

// netTopo is the network of TestAgentlessNetworkIsolation: the agentless
// server's sshd in a namespace of its own, the user in another, each
// linked to the test's namespace (where auth and the proxy run) by a veth
// pair, and no route between the two: the user reaches the proxy and
// nothing else.
//
//	user ns  userIP ──veth── proxyIP   test ns (proxy)   hostIP ──veth── serverIP  server ns (sshd)
type netTopo struct {
	server, user string // namespace names
	// serverIP is sshd's address; proxyIP the test namespace's address on
	// the user's link (the proxy listens there).
	serverIP, proxyIP string
}

// newNetTopo makes the namespaces and links, with names and addresses of
// its own so parallel runs do not collide, and removes them when the test
// ends.
func newNetTopo(t *testing.T) *netTopo {
	t.Helper()
	testkit.ChangeNetwork(t) // no browser test meanwhile (its Chromium would see the interfaces change)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip (iproute2) is required: apt-get install iproute2")
	}
	b := make([]byte, 5)
	var id, prefix string
	for {
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		id = hex.EncodeToString(b[:3])
		prefix = fmt.Sprintf("10.%d.%d.", 100+int(b[3])%100, b[4])
		if r := Run(t, nil, "ip", "-4", "-o", "addr"); r.Code != 0 || !strings.Contains(r.Stdout, " "+prefix) {
			break
		}
	}
	n := &netTopo{server: "wd-srv-" + id, user: "wd-usr-" + id, serverIP: prefix + "2", proxyIP: prefix + "5"}
	ip := func(args ...string) {
		t.Helper()
		if r := Run(t, nil, "ip", args...); r.Code != 0 {
			t.Fatalf("ip %s: %s", strings.Join(args, " "), r)
		}
	}
	// Interface names: at most 15 bytes.
	hostS, nsS, hostU, nsU := "wds"+id+"h", "wds"+id+"n", "wdu"+id+"h", "wdu"+id+"n"
	t.Cleanup(func() {
		// The links first: ip link del removes both ends of a pair before
		// it returns, while a deleted namespace's veths go later, in the
		// kernel's own time, perhaps after the network lock is released
		// and while a browser test runs.
		for _, l := range []string{hostS, hostU} {
			_ = exec.Command("ip", "link", "del", l).Run()
		}
		for _, ns := range []string{n.server, n.user} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, l := range []struct{ ns, host, peer, hostIP, nsIP string }{
		{n.server, hostS, nsS, prefix + "1", n.serverIP},
		{n.user, hostU, nsU, n.proxyIP, prefix + "6"},
	} {
		ip("netns", "add", l.ns)
		ip("link", "add", l.host, "type", "veth", "peer", "name", l.peer)
		ip("link", "set", l.peer, "netns", l.ns)
		ip("addr", "add", l.hostIP+"/30", "dev", l.host)
		ip("link", "set", "dev", l.host, "addrgenmode", "none") // see netLab.quiet
		ip("link", "set", l.host, "up")
		ip("-n", l.ns, "addr", "add", l.nsIP+"/30", "dev", l.peer)
		ip("-n", l.ns, "link", "set", l.peer, "up")
		ip("-n", l.ns, "link", "set", "lo", "up")
		// No default route: each namespace reaches its own link only.
	}
	return n
}

// in runs a command in a namespace.
func (n *netTopo) in(t *testing.T, ns string, stdin *strings.Reader, name string, args ...string) Result {
	t.Helper()
	full := append([]string{"netns", "exec", ns, name}, args...)
	if stdin == nil {
		return Run(t, nil, "ip", full...)
	}
	return Run(t, stdin, "ip", full...)
}

// TestAgentlessNetworkIsolation is issue 28's setting: sshd in its own
// network namespace, the user's OpenSSH tools in another that reaches the
// proxy but not sshd, so the proxy is the only way in (ssh, scp, sftp,
// rsync and Ansible all go through it); and, from the test's namespace
// (the direct path a stolen certificate would take), sshd itself refuses
// a locked user's still-valid certificate within seconds of the lock
// (KRL) and takes it again after the unlock.
func TestAgentlessNetworkIsolation(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	if r := Run(t, nil, "usermod", "-p", "*", osLogin); r.Code != 0 {
		t.Fatalf("usermod: %s", r)
	}
	n := newNetTopo(t)
	c := New(t, Options{NoNode: true, Proxy: service.ProxyConfig{Listen: n.proxyIP + ":0"}})
	a := StartAgentlessWith(t, c, "isolated1", "env=prod", testkit.SSHDOptions{NetNS: n.server, Listen: n.serverIP + ":22"})
	admin := t.TempDir()
	u := c.AddUser("alice", []string{"access"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	target := osLogin + "@isolated1"
	user := func(stdin *strings.Reader, name string, args ...string) Result {
		t.Helper()
		return n.in(t, n.user, stdin, name, args...)
	}

	// alice's certificate used straight against sshd, as someone who
	// copied it would.
	direct := func(from func(*strings.Reader, string, ...string) Result) Result {
		return from(nil, "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes",
			"-i", filepath.Join(home, "key"), "-o", "CertificateFile="+filepath.Join(home, "key-cert.pub"),
			"-p", "22", osLogin+"@"+n.serverIP, "echo direct-ok")
	}
	host := func(stdin *strings.Reader, name string, args ...string) Result {
		t.Helper()
		if stdin == nil {
			return Run(t, nil, name, args...)
		}
		return Run(t, stdin, name, args...)
	}

	t.Run("the user's namespace reaches the proxy, not sshd", func(t *testing.T) {
		// The same certificate that works from the test's namespace
		// (below) cannot even reach sshd from the user's.
		r := direct(user)
		if r.Code == 0 || strings.Contains(r.Stdout, "direct-ok") {
			t.Fatalf("sshd reached directly from the user's namespace: %s", r)
		}
		if !strings.Contains(r.Stderr, "Network is unreachable") && !strings.Contains(r.Stderr, "No route to host") {
			t.Fatalf("the direct dial failed, but not for want of a route: %s", r)
		}
		if r := direct(host); r.Code != 0 || !strings.Contains(r.Stdout, "direct-ok") {
			t.Fatalf("direct ssh from the test namespace (the bypass path): %s", r)
		}
		if r := user(nil, "ssh", sshArgs(cfg, target, "whoami; exit 7")...); r.Code != 7 || !strings.Contains(r.Stdout, osLogin) {
			t.Fatalf("ssh through the proxy: %s", r)
		}
		if w := user(nil, WardenBinary, "--home", home, "ssh", target, "echo", "via-warden"); w.Code != 0 || !strings.Contains(w.Stdout, "via-warden") {
			t.Fatalf("warden ssh through the proxy: %s", w)
		}
	})

	t.Run("scp, sftp and rsync through the proxy", func(t *testing.T) {
		data := bytes.Repeat([]byte("warden isolated "), 50000)
		local := filepath.Join(t.TempDir(), "blob")
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
		remote := "/tmp/warden-isolated-" + randHex(t)
		t.Cleanup(func() { os.Remove(remote) })
		if r := user(nil, "scp", sshArgs(cfg, "-q", local, target+":"+remote)...); r.Code != 0 {
			t.Fatalf("scp: %s", r)
		}
		if got, err := os.ReadFile(remote); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("scp wrote %d bytes (%v), want %d", len(got), err, len(data))
		}
		back := filepath.Join(t.TempDir(), "back")
		if r := user(strings.NewReader("get "+remote+" "+back+"\n"), "sftp", sshArgs(cfg, "-b", "-", target)...); r.Code != 0 {
			t.Fatalf("sftp: %s", r)
		}
		if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
			t.Fatalf("sftp read %d bytes, want %d", len(got), len(data))
		}
		src := t.TempDir()
		for i := 0; i < 3; i++ {
			if err := os.WriteFile(filepath.Join(src, "f"+strings.Repeat("x", i)), bytes.Repeat([]byte{byte(i)}, 10000+i), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		dst := "/tmp/warden-isolated-rsync-" + randHex(t)
		t.Cleanup(func() { os.RemoveAll(dst) })
		if r := user(nil, "rsync", "-a", "-e", "ssh "+strings.Join(sshArgs(cfg), " "), src+"/", target+":"+dst+"/"); r.Code != 0 {
			t.Fatalf("rsync: %s", r)
		}
		if got, err := os.ReadFile(filepath.Join(dst, "fxx")); err != nil || len(got) != 10002 {
			t.Fatalf("rsync copied %d bytes (%v)", len(got), err)
		}
	})

	t.Run("ansible ad-hoc and playbook through the proxy", func(t *testing.T) {
		if _, err := os.Stat("/usr/bin/ansible-playbook"); err != nil {
			t.Fatal("ansible is required (apt-get install ansible)")
		}
		dir := t.TempDir()
		inv := filepath.Join(dir, "hosts")
		if err := os.WriteFile(inv, []byte("isolated1 ansible_user="+osLogin+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		remote := "/tmp/warden-isolated-ansible-" + randHex(t)
		t.Cleanup(func() { os.Remove(remote) })
		play := filepath.Join(dir, "play.yml")
		if err := os.WriteFile(play, []byte(`- hosts: isolated1
  gather_facts: false
  tasks:
    - copy: {content: "written-by-ansible\n", dest: `+remote+`}
    - command: cat `+remote+`
      register: out
    - assert: {that: ["out.stdout == 'written-by-ansible'"]}
`), 0o644); err != nil {
			t.Fatal(err)
		}
		env := []string{"ANSIBLE_HOST_KEY_CHECKING=True", "ANSIBLE_SSH_ARGS=-F " + cfg, "ANSIBLE_LOCAL_TEMP=" + t.TempDir()}
		r := user(nil, "env", append(env, "ansible", "-i", inv, "isolated1", "-m", "ping")...)
		if r.Code != 0 || !strings.Contains(r.Stdout, "pong") {
			t.Fatalf("ansible ping: %s", r)
		}
		r = user(nil, "env", append(env, "ansible-playbook", "-i", inv, play)...)
		if r.Code != 0 || !strings.Contains(r.Stdout, "failed=0") {
			t.Fatalf("ansible-playbook: %s", r)
		}
		if got, err := os.ReadFile(remote); err != nil || string(got) != "written-by-ansible\n" {
			t.Fatalf("the playbook wrote %q (%v)", got, err)
		}
	})

	t.Run("a lock: sshd refuses the certificate on the direct path; unlock lets it in", func(t *testing.T) {
		certBytes, err := os.ReadFile(filepath.Join(home, "key-cert.pub"))
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _, _, _ := ssh.ParseAuthorizedKey(certBytes)
		cert := pub.(*ssh.Certificate)
		lockAt := time.Now()
		id := lockID(t, c.Warden(admin, nil, "lock", "--user", "alice", "--ttl", "10m", "--message", "investigating"))
		testkit.WaitFor(t, "sshd's KRL to revoke alice's certificate", func() bool { return a.Revoked(t, cert) })
		t.Logf("sshd's KRL revoked the certificate %s after the lock command started", time.Since(lockAt).Round(time.Millisecond))
		if r := direct(host); r.Code == 0 || strings.Contains(r.Stdout, "direct-ok") {
			t.Fatalf("sshd accepted a locked user's certificate directly: %s", r)
		}
		if !strings.Contains(a.SSHD.Log.String(), "revoked by file") {
			t.Errorf("sshd's log does not say the key was revoked:\n%s", a.SSHD.Log.String())
		}
		if r := user(nil, "ssh", sshArgs(cfg, target, "true")...); r.Code == 0 || !strings.Contains(r.Stderr, "investigating") {
			t.Fatalf("ssh through the proxy while locked: %s", r)
		}
		unlockAt := time.Now()
		if r := c.Warden(admin, nil, "unlock", id); r.Code != 0 {
			t.Fatalf("unlock: %s", r)
		}
		testkit.WaitFor(t, "sshd's KRL to let alice's certificate in again", func() bool { return !a.Revoked(t, cert) })
		t.Logf("sshd's KRL let the certificate in again %s after the unlock command started", time.Since(unlockAt).Round(time.Millisecond))
		if r := direct(host); r.Code != 0 || !strings.Contains(r.Stdout, "direct-ok") {
			t.Fatalf("direct ssh after the unlock: %s", r)
		}
		if r := user(nil, "ssh", sshArgs(cfg, target, "echo back")...); r.Code != 0 || !strings.Contains(r.Stdout, "back") {
			t.Fatalf("ssh through the proxy after the unlock: %s", r)
		}
	})
}
