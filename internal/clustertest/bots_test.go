//go:build integration

package clustertest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/testkit"
)

// botRoles: bots' sessions outlive a certificate (they renew), so the role
// keeps them past its expiry.
const botRoles = `
kind: role
metadata: {name: ci}
spec:
  options: {disconnect_expired_cert: false}
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
`

// addBot runs `warden bots add` and returns the join token and CA pin it
// prints.
func addBot(t *testing.T, c *Cluster, args ...string) (token, pin string) {
	t.Helper()
	res := c.Warden(t.TempDir(), nil, append([]string{"bots", "add"}, args...)...)
	if res.Code != 0 {
		t.Fatalf("bots add: %s", res)
	}
	m := regexp.MustCompile(`echo (\S+) > bot-token\)\n\s+warden bot start --proxy \S+ --ca-pin (\S+) --token-file bot-token`).FindStringSubmatch(res.Stdout)
	if m == nil {
		t.Fatalf("bots add printed no join command:\n%s", res.Stdout)
	}
	return m[1], m[2]
}

func writeSecret(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBotOutputForOpenSSHAndAnsible: `warden bot start --oneshot` with a
// single-use token fills an output directory that plain ssh, scp and an
// ansible-playbook run over two nodes use as it is; the token cannot join
// twice; bots are listed apart from people.
func TestBotOutputForOpenSSHAndAnsible(t *testing.T) {
	EnsureOSUser(t, "wbot")
	c := New(t, Options{NodeName: "node1"})
	c.StartNode("node2", map[string]string{"env": "ci"})
	c.WaitForNodes(2)
	c.ApplyRoles(botRoles)
	token, pin := addBot(t, c, "ci", "--roles", "ci", "--logins", "wbot", "--ttl", "10m")
	tokenFile := writeSecret(t, token)
	dest := filepath.Join(t.TempDir(), "out")
	storage := filepath.Join(t.TempDir(), "state")
	start := []string{"bot", "start", "--proxy", c.ProxyAddr(), "--ca-pin", pin, "--token-file", tokenFile,
		"--dest", dest, "--storage", storage, "--oneshot"}
	if res := Run(t, nil, WardenBinary, start...); res.Code != 0 {
		t.Fatalf("bot start --oneshot: %s", res)
	}
	// 0700 directories, 0600 files.
	for _, dir := range []string{dest, storage} {
		st, err := os.Stat(dir)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v", dir, st.Mode(), err)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if info, err := e.Info(); err == nil && info.Mode().Perm() != 0o600 {
				t.Errorf("%s/%s is %v", dir, e.Name(), info.Mode())
			}
		}
	}
	for _, f := range []string{"key", "key-cert.pub", "tls.crt", "known_hosts", "ssh_config"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("output lacks %s: %v", f, err)
		}
	}
	// The token was single use.
	again := Run(t, nil, WardenBinary, append(start[:len(start)-5:len(start)-5], "--dest", t.TempDir()+"/o2", "--storage", t.TempDir()+"/s2", "--oneshot")...)
	if again.Code == 0 || !strings.Contains(again.Stderr, "already used") {
		t.Errorf("a second join with the token: %s", again)
	}

	cfg := filepath.Join(dest, "ssh_config")
	for _, node := range []string{"node1", "node2"} {
		res := Run(t, nil, "ssh", "-F", cfg, "wbot@"+node, "echo", "hello from", "$(hostname)")
		if res.Code != 0 || !strings.Contains(res.Stdout, "hello from") {
			t.Fatalf("ssh to %s with the bot's output: %s", node, res)
		}
	}
	src := writeSecret(t, "payload")
	target := fmt.Sprintf("/tmp/warden-bot-scp-%d", time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(target) })
	if res := Run(t, nil, "scp", "-F", cfg, src, "wbot@node2:"+target); res.Code != 0 {
		t.Fatalf("scp with the bot's output: %s", res)
	}
	if res := Run(t, nil, "rsync", "-e", "ssh -F "+cfg, src, "wbot@node1:"+target+".rsync"); res.Code != 0 {
		t.Fatalf("rsync with the bot's output: %s", res)
	}
	t.Cleanup(func() { os.Remove(target + ".rsync") })

	// Ansible: a playbook writing a file on two nodes, with nothing but
	// the output directory.
	work := t.TempDir()
	os.Chmod(work, 0o755)
	stamp := strconv.FormatInt(time.Now().UnixNano(), 10)
	inventory := "[ci]\nnode1\nnode2\n\n[ci:vars]\nansible_user=wbot\nansible_python_interpreter=/usr/bin/python3\n"
	playbook := fmt.Sprintf(`- hosts: ci
  gather_facts: false
  tasks:
    - copy:
        dest: /tmp/warden-bot-ansible-%s-{{ inventory_hostname }}
        content: "written by bot ci on {{ inventory_hostname }}\n"
`, stamp)
	for name, text := range map[string]string{"inventory": inventory, "site.yml": playbook} {
		if err := os.WriteFile(filepath.Join(work, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ansibleHome := t.TempDir()
	res := runEnv(t, []string{"HOME=" + ansibleHome, "ANSIBLE_SSH_ARGS=-F " + cfg, "ANSIBLE_SSH_CONTROL_PATH_DIR=" + ansibleHome,
		"ANSIBLE_LOCAL_TEMP=" + ansibleHome, "ANSIBLE_REMOTE_TMP=/tmp", "ANSIBLE_NOCOLOR=1", "ANSIBLE_RETRY_FILES_ENABLED=0"},
		"ansible-playbook", "-i", filepath.Join(work, "inventory"), filepath.Join(work, "site.yml"))
	if res.Code != 0 || !strings.Contains(res.Stdout, "node1") || !strings.Contains(res.Stdout, "node2") {
		t.Fatalf("ansible-playbook with the bot's output: %s", res)
	}
	for _, node := range []string{"node1", "node2"} {
		path := "/tmp/warden-bot-ansible-" + stamp + "-" + node
		t.Cleanup(func() { os.Remove(path) })
		data, err := os.ReadFile(path)
		if err != nil || string(data) != "written by bot ci on "+node+"\n" {
			t.Errorf("%s: %q, %v", path, data, err)
		}
	}
	// Audited under the bot's name, on both nodes.
	evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.SessionStart, User: "bot-ci", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	for _, ev := range evs {
		nodes[ev.Node] = true
	}
	if !nodes["node1"] || !nodes["node2"] {
		t.Errorf("session.start events of bot-ci on nodes %v", nodes)
	}

	// Bots are listed apart from people.
	users := c.Warden(t.TempDir(), nil, "users", "ls")
	if strings.Contains(users.Stdout, "bot-ci") || !strings.Contains(users.Stderr, "1 bots not shown") {
		t.Errorf("users ls: %s", users)
	}
	bots := c.Warden(t.TempDir(), nil, "bots", "ls")
	if !strings.Contains(bots.Stdout, "bot-ci") || !strings.Contains(bots.Stdout, "token, gen 1") {
		t.Errorf("bots ls: %s", bots)
	}

	// Locked (warden lock --bot): ssh and the bot's next renewal (from its
	// stored identity) are refused with the lock's message.
	if res := c.Warden(t.TempDir(), nil, "lock", "--bot", "ci", "--message", "rotating CI"); res.Code != 0 || !strings.Contains(res.Stdout, "user=bot-ci") {
		t.Fatalf("lock --bot: %s", res)
	}
	if res := Run(t, nil, "ssh", "-F", cfg, "wbot@node1", "true"); res.Code == 0 || !strings.Contains(res.Stderr, "rotating CI") {
		t.Errorf("ssh as a locked bot: %s", res)
	}
	renew := Run(t, nil, WardenBinary, "bot", "start", "--proxy", c.ProxyAddr(), "--dest", dest, "--storage", storage, "--oneshot")
	if renew.Code == 0 || !strings.Contains(renew.Stderr, "rotating CI") {
		t.Errorf("a locked bot renewing: %s", renew)
	}
}

// runEnv is Run with extra environment variables.
func runEnv(t *testing.T, env []string, name string, args ...string) Result {
	t.Helper()
	old := map[string]*string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if prev, ok := os.LookupEnv(k); ok {
			old[k] = &prev
		} else {
			old[k] = nil
		}
		os.Setenv(k, v)
	}
	defer func() {
		for k, v := range old {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
	}()
	return Run(t, nil, name, args...)
}

// TestBotRenewsWhileSessionStaysUp: `warden bot start` renews its
// certificates again and again (a TTL of 6 s, over three lifetimes), each
// renewal logged with the next generation; a long ssh session opened with
// the first certificate stays up throughout, and new connections use the
// renewed ones. Removing the bot ends the session and the bot.
func TestBotRenewsWhileSessionStaysUp(t *testing.T) {
	EnsureOSUser(t, "wbot")
	c := New(t, Options{NodeName: "node1"})
	c.ApplyRoles(botRoles)
	token, pin := addBot(t, c, "renewer", "--roles", "ci", "--logins", "wbot", "--ttl", "6s")
	dest := filepath.Join(t.TempDir(), "out")
	other := filepath.Join(t.TempDir(), "out2")
	bot := startBackground(t, WardenBinary, "bot", "start", "--proxy", c.ProxyAddr(), "--ca-pin", pin, "--token-file", writeSecret(t, token),
		"--dest", dest, "--dest", other+":ci", "--storage", filepath.Join(t.TempDir(), "state"))
	bot.waitFor(t, "dir="+other+" roles=[ci]")
	cfg := filepath.Join(dest, "ssh_config")
	firstCert, _ := os.ReadFile(filepath.Join(dest, "key-cert.pub"))

	// The long session: a loop that answers each line.
	session := startBackground(t, "ssh", "-F", cfg, "wbot@node1", `while read l; do echo "got $l"; done`)
	ask := func(line string) {
		t.Helper()
		if _, err := io.WriteString(session.stdin, line+"\n"); err != nil {
			t.Fatalf("the long session is gone: %v\n%s", err, session.err.String())
		}
		session.waitFor(t, "got "+line+"\n")
	}
	ask("first")
	began := time.Now()
	// Three lifetimes: generation 5 at least (join 1, a renewal every 4 s).
	testkit.WaitFor(t, "the bot to renew over three certificate lifetimes: %s", func() bool {
		return strings.Contains(bot.err.String(), "generation=5") && time.Since(began) > 18*time.Second
	}, &bot.err)
	ask("after three lifetimes")
	renewed, _ := os.ReadFile(filepath.Join(dest, "key-cert.pub"))
	if string(renewed) == string(firstCert) {
		t.Error("the output's certificate was not renewed")
	}
	if n := strings.Count(bot.err.String(), "bot identity renewed"); n < 4 {
		t.Errorf("%d renewals logged:\n%s", n, bot.err.String())
	}
	// A new connection with the renewed certificate (the first expired long ago).
	if res := Run(t, nil, "ssh", "-F", cfg, "wbot@node1", "echo", "fresh"); res.Code != 0 || !strings.Contains(res.Stdout, "fresh") {
		t.Fatalf("ssh with the renewed output: %s", res)
	}
	if res := Run(t, nil, "ssh", "-F", filepath.Join(other, "ssh_config"), "wbot@node1", "echo", "second output"); res.Code != 0 {
		t.Fatalf("ssh with the second output: %s", res)
	}

	// Removing the bot cuts the session at once, and the bot stops at its
	// next renewal, refused.
	if res := c.Warden(t.TempDir(), nil, "bots", "rm", "renewer"); res.Code != 0 {
		t.Fatalf("bots rm: %s", res)
	}
	if code := session.wait(t); code == 0 {
		t.Errorf("the session of a removed bot ended with 0")
	}
	// (Refused at its renewal, or, when the removal lands just after
	// one, at the listing of clusters for its kubeconfig that follows.)
	if code := bot.wait(t); code == 0 || !strings.Contains(bot.err.String(), "bot renewer was removed") {
		t.Errorf("bot start after its bot was removed: exit %d\n%s", code, bot.err.String())
	}
}
