//go:build integration

package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// kubectlTTY runs kubectl on a terminal (a pty) and returns it and its
// output so far.
func kubectlTTY(t *testing.T, env []string, kubeconfig string, args ...string) (*exec.Cmd, *os.File, *ttyOut) {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	term, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	out := &ttyOut{Buffer: &syncbuf.Buffer{}, done: make(chan struct{})}
	go func() { _, _ = io.Copy(out, term); close(out.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		term.Close()
	})
	return cmd, term, out
}

// ttyOut is what kubectl wrote on its terminal; done is closed once all
// of it is read.
type ttyOut struct {
	*syncbuf.Buffer
	done chan struct{}
}

// waitExit waits for cmd to end by itself, and for all its output.
func waitExit(t *testing.T, cmd *exec.Cmd, out *ttyOut) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatalf("kubectl did not end:\n%s", out.String())
	}
	select {
	case <-out.done:
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatalf("kubectl's terminal did not close:\n%s", out.String())
	}
}

// kubectl attach, exec over SPDY, port-forward and cp through the proxy
// and the kube agent, with the real kubectl and kube-apiserver; and a
// malformed stream frame ends its own stream only.
func TestKubeStreams(t *testing.T) {
	e := startKubeEnv(t)
	c := e.c
	admin := t.TempDir()
	dev := c.AddUser("dev", []string{"kube-member"}, nil)
	home := c.Login(dev)
	kubeconfig := e.kubeLogin(home, "test-k8s")
	kubelet := e.kc.StartKubelet(t, "vk2")
	e.kc.Must(t, kubelet.AttachablePod("default", "attachme"), "apply", "-f", "-")

	t.Run("attach -it is recorded", func(t *testing.T) {
		cmd, term, out := kubectlTTY(t, nil, kubeconfig, "attach", "-it", "attachme", "-n", "default", "-c", "main")
		testkit.WaitFor(t, "the attached shell", func() bool {
			_, _ = term.Write([]byte("echo attach-$((6*7))-marker\n"))
			return strings.Contains(out.String(), "attach-42-marker")
		})
		id := liveKubeSession(t, c, admin, "dev", "kube-attach")
		if _, err := term.Write([]byte("exit\n")); err != nil {
			t.Fatal(err)
		}
		waitExit(t, cmd, out)
		checkKubeRecording(t, c, admin, id, "attach-42-marker", "echo attach-$((6*7))")
	})

	t.Run("exec -it over SPDY is recorded", func(t *testing.T) {
		// kubectl before 1.30 speaks SPDY; today's does when told to.
		cmd, term, out := kubectlTTY(t, []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}, kubeconfig,
			"exec", "-it", "shell", "-n", "default", "--", "sh")
		testkit.WaitFor(t, "the shell over SPDY", func() bool {
			_, _ = term.Write([]byte("echo spdy-$((6*7))-marker\n"))
			return strings.Contains(out.String(), "spdy-42-marker")
		})
		id := liveKubeSession(t, c, admin, "dev", "kube-exec")
		if _, err := term.Write([]byte("exit 3\n")); err != nil {
			t.Fatal(err)
		}
		waitExit(t, cmd, out)
		if code := cmd.ProcessState.ExitCode(); code != 3 {
			t.Fatalf("kubectl exit code %d, want 3:\n%s", code, out.String())
		}
		checkKubeRecording(t, c, admin, id, "spdy-42-marker", "echo spdy-$((6*7))")
		evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.SessionStart})
		if err != nil || len(evs) != 1 || !strings.HasPrefix(fmt.Sprint(evs[0].Fields["protocol"]), "SPDY/3.1") {
			t.Fatalf("session.start: %v %+v", err, evs)
		}
		execs, err := c.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.Exec})
		if err != nil || len(execs) != 1 || fmt.Sprint(execs[0].Fields["exit_code"]) != "3" || execs[0].Fields["command"] != "sh" {
			t.Fatalf("exec event: %v %+v", err, execs)
		}
	})

	t.Run("a lock on one session ends it only", func(t *testing.T) {
		one, term1, out1 := kubectlTTY(t, nil, kubeconfig, "exec", "-it", "shell", "-n", "default", "--", "sh")
		testkit.WaitFor(t, "the first shell", func() bool {
			_, _ = term1.Write([]byte("echo one-$((6*7))\n"))
			return strings.Contains(out1.String(), "one-42")
		})
		id := liveKubeSession(t, c, admin, "dev", "kube-exec")
		_, term2, out2 := kubectlTTY(t, nil, kubeconfig, "exec", "-it", "shell", "-n", "default", "--", "sh")
		testkit.WaitFor(t, "the second shell", func() bool {
			_, _ = term2.Write([]byte("echo two-$((6*7))\n"))
			return strings.Contains(out2.String(), "two-42")
		})
		// What the web UI's Terminate does.
		if r := c.Warden(admin, nil, "lock", "--session", id, "--message", "terminated by the test"); r.Code != 0 {
			t.Fatalf("lock --session: %s", r)
		}
		waitExit(t, one, out1)
		testkit.WaitFor(t, "the session's end with the lock's message", func() bool {
			evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.SessionEnd})
			return err == nil && len(evs) == 1 && strings.Contains(fmt.Sprint(evs[0].Fields["reason"]), "terminated by the test")
		})
		testkit.WaitFor(t, "the second shell after", func() bool {
			_, _ = term2.Write([]byte("echo still-$((6*7))\n"))
			return strings.Contains(out2.String(), "still-42")
		})
		_, _ = term2.Write([]byte("exit\n"))
	})

	t.Run("the roles' record_session and record_input apply", func(t *testing.T) {
		c.ApplyRoles(`kind: role
metadata: {name: kube-strict}
spec:
  options: {record_session: strict, record_input: true}
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: ["system:masters"]
---
kind: role
metadata: {name: kube-unrecorded}
spec:
  options: {record_session: "off"}
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: ["system:masters"]
`)
		strictCfg := e.kubeLogin(c.Login(c.AddUser("strict", []string{"kube-strict"}, nil)), "test-k8s")
		offCfg := e.kubeLogin(c.Login(c.AddUser("unrecorded", []string{"kube-unrecorded"}, nil)), "test-k8s")

		// Typed with the terminal's echo off: only a recording of the
		// input has it.
		typeHidden := func(kubeconfig, marker string) *exec.Cmd {
			cmd, term, out := kubectlTTY(t, nil, kubeconfig, "exec", "-it", "shell", "-n", "default", "--", "sh")
			testkit.WaitFor(t, "a shell", func() bool {
				_, _ = term.Write([]byte("echo up-$((6*7))\n"))
				return strings.Contains(out.String(), "up-42")
			})
			_, _ = term.Write([]byte("stty -echo; echo echo-$((2*3))-off\n"))
			testkit.WaitFor(t, "the terminal's echo off", func() bool { return strings.Contains(out.String(), "echo-6-off") })
			_, _ = term.Write([]byte("echo " + marker + "-$((1+1))\n"))
			testkit.WaitFor(t, "the hidden command's output", func() bool { return strings.Contains(out.String(), marker+"-2") })
			if strings.Contains(out.String(), marker+"-$((1+1))") {
				t.Fatalf("the terminal echoed: %s", out.String())
			}
			_, _ = term.Write([]byte("exit\n"))
			waitExit(t, cmd, out)
			return cmd
		}
		sessionOf := func(user string) (id string, recorded bool) {
			evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.SessionStart, User: user, Limit: 100})
			if err != nil || len(evs) == 0 {
				t.Fatalf("session.start of %s: %v", user, err)
			}
			last := evs[len(evs)-1]
			return last.SessionID, last.Fields["recorded"] == true
		}

		typeHidden(strictCfg, "strict-input")
		id, _ := sessionOf("strict")
		checkKubeRecording(t, c, admin, id, "strict-input-2", "echo strict-input-$((1+1))")

		// best_effort without record_input (dev): the output only.
		typeHidden(kubeconfig, "plain-input")
		id, _ = sessionOf("dev")
		testkit.WaitFor(t, "recording.complete of "+id, func() bool {
			evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.RecordingComplete})
			return err == nil && len(evs) == 1
		})
		if r := c.Warden(admin, nil, "recordings", "search", "echo plain-input-$((1+1))"); r.Code != 0 || strings.Contains(r.Stdout, id) {
			t.Fatalf("input recorded without record_input: %s", r)
		}

		// off: not recorded.
		typeHidden(offCfg, "off-input")
		id, recorded := sessionOf("unrecorded")
		if recorded {
			t.Fatal("session.start says recorded with record_session off")
		}
		if r := c.Warden(admin, nil, "recordings", "ls"); r.Code != 0 || strings.Contains(r.Stdout, id) {
			t.Fatalf("a recording with record_session off: %s", r)
		}

		// strict, with auth's recording store broken (its directory is
		// now a file): refused; best_effort goes on.
		dir := filepath.Join(c.DataDir, "recordings")
		if err := os.Rename(dir, dir+".away"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		defer func() {
			os.Remove(dir)
			if err := os.Rename(dir+".away", dir); err != nil {
				t.Fatal(err)
			}
		}()
		onTerminal := func(kubeconfig, word string) (*exec.Cmd, string) {
			cmd, _, out := kubectlTTY(t, nil, kubeconfig, "exec", "-it", "shell", "-n", "default", "--", "echo", word)
			waitExit(t, cmd, out)
			return cmd, out.String()
		}
		if cmd, out := onTerminal(strictCfg, "strict-reached"); cmd.ProcessState.ExitCode() == 0 || strings.Contains(out, "strict-reached") ||
			!strings.Contains(out, "session recording is required") {
			t.Fatalf("strict exec -it without a recording store: code %d: %s", cmd.ProcessState.ExitCode(), out)
		}
		if cmd, out := onTerminal(kubeconfig, "best-effort-reached"); cmd.ProcessState.ExitCode() != 0 || !strings.Contains(out, "best-effort-reached") {
			t.Fatalf("best_effort exec -it without a recording store: code %d: %s", cmd.ProcessState.ExitCode(), out)
		}
		// Without a terminal nothing is recorded: strict does not apply.
		if r := kubectl(t, strictCfg, "exec", "shell", "-n", "default", "--", "echo", "plain-reached"); r.Code != 0 || !strings.Contains(r.Stdout, "plain-reached") {
			t.Fatalf("strict exec without a terminal: %s", r)
		}
	})

	t.Run("port-forward carries bytes", func(t *testing.T) {
		// The "pod's" port: an echo server on loopback.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer conn.Close(); _, _ = io.Copy(conn, conn) }()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		// kubectl forwards only to a running pod; the stand-in kubelet
		// runs no pod controller, so the test says it runs.
		e.kc.Must(t, "", "patch", "pod", "shell", "-n", "default", "--subresource=status", "--type=merge",
			"-p", `{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}`)
		// A user of its own, locked at the end.
		fwdConfig := e.kubeLogin(c.Login(c.AddUser("forwarder", []string{"kube-member"}, nil)), "test-k8s")
		pf := exec.Command("kubectl", "--kubeconfig", fwdConfig, "port-forward", "-n", "default", "pod/shell", fmt.Sprintf(":%d", port))
		out := &syncbuf.Buffer{}
		pf.Stdout, pf.Stderr = out, out
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pf.Process.Kill() })
		var local string
		testkit.WaitFor(t, "kubectl port-forward listening", func() bool {
			m := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) ->`).FindStringSubmatch(out.String())
			if m != nil {
				local = m[1]
			}
			return m != nil
		}, out)
		conn, err := net.Dial("tcp", local)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		want := make([]byte, 1<<20)
		_, _ = rand.Read(want)
		go func() { _, _ = conn.Write(want) }()
		_ = conn.SetReadDeadline(patience.Deadline(t))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("echo through port-forward: %v (equal %v)\n%s", err, bytes.Equal(got, want), out.String())
		}
		// A lock ends the live forward: the open connection is cut and
		// kubectl port-forward stops.
		exited := make(chan error, 1)
		go func() { exited <- pf.Wait() }()
		if r := c.Warden(admin, nil, "lock", "--user", "forwarder", "--message", "no more forwarding"); r.Code != 0 {
			t.Fatalf("lock: %s", r)
		}
		if _, err := io.Copy(io.Discard, conn); err != nil && !isClosed(err) {
			t.Fatalf("the forwarded connection after the lock: %v", err)
		}
		select {
		case <-exited:
		case <-time.After(time.Until(patience.Deadline(t))):
			t.Fatalf("kubectl port-forward outlived the lock:\n%s", out.String())
		}
		// Audited when the request ends.
		testkit.WaitFor(t, "the port-forward's kube.request event", func() bool {
			evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.KubeRequest, User: "forwarder", Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.Fields["resource"] == "pods/portforward" && ev.Fields["name"] == "shell" {
					return true
				}
			}
			return false
		})
	})

	t.Run("cp both ways", func(t *testing.T) {
		// The "container" is this machine: its paths are local ones.
		dir := t.TempDir()
		want := make([]byte, 300<<10)
		_, _ = rand.Read(want)
		src := filepath.Join(dir, "up.bin")
		if err := os.WriteFile(src, want, 0o600); err != nil {
			t.Fatal(err)
		}
		podDir := t.TempDir()
		if r := kubectl(t, kubeconfig, "cp", src, "default/shell:"+podDir+"/in-pod.bin"); r.Code != 0 {
			t.Fatalf("cp to the pod: %s", r)
		}
		if got, err := os.ReadFile(filepath.Join(podDir, "in-pod.bin")); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("the file in the pod: %v (equal %v)", err, bytes.Equal(got, want))
		}
		back := filepath.Join(dir, "down.bin")
		if r := kubectl(t, kubeconfig, "cp", "default/shell:"+podDir+"/in-pod.bin", back); r.Code != 0 {
			t.Fatalf("cp from the pod: %s", r)
		}
		if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("the file copied back: %v (equal %v)", err, bytes.Equal(got, want))
		}
		// Both are exec sessions without a terminal: audited with their
		// tar commands (when each stream has ended).
		var up, down bool
		testkit.WaitFor(t, "the exec events of both copies", func() bool {
			execs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.Exec, User: "dev", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range execs {
				cmd, ok := fmt.Sprint(ev.Fields["command"]), ev.Fields["tty"] == false && fmt.Sprint(ev.Fields["exit_code"]) == "0"
				up = up || (ok && strings.HasPrefix(cmd, "tar -xmf - -C "+podDir))
				down = down || (ok && strings.HasPrefix(cmd, "tar cf - ") && strings.Contains(cmd, "in-pod.bin"))
			}
			return up && down
		}, &up, &down)
	})

	t.Run("a malformed frame ends its stream only", func(t *testing.T) {
		// A live terminal session next to it must not notice.
		_, term, out := kubectlTTY(t, nil, kubeconfig, "exec", "-it", "shell", "-n", "default", "--", "sh")
		testkit.WaitFor(t, "the other shell", func() bool {
			_, _ = term.Write([]byte("echo before-$((6*7))\n"))
			return strings.Contains(out.String(), "before-42")
		})
		ws := dialKubeWebSocket(t, c.ProxyAddr(), home,
			"/kube/test-k8s/api/v1/namespaces/default/pods/shell/exec?command=sh&stdin=true&stdout=true&stderr=true")
		ws.send(t, 0x2, append([]byte{0}, "echo ws-$((6*7))\n"...))
		ws.readUntil(t, "ws-42")
		// Opcode 3 is reserved: the proxy ends this stream.
		ws.send(t, 0x3, []byte("junk"))
		_ = ws.conn.SetReadDeadline(patience.Deadline(t))
		if _, err := io.Copy(io.Discard, ws.r); err != nil && !isClosed(err) {
			t.Fatalf("the malformed stream was not ended: %v", err)
		}
		// Its session's end says why.
		testkit.WaitFor(t, "the malformed session's end", func() bool {
			evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.SessionEnd, User: "dev", Limit: 100})
			if err != nil {
				return false
			}
			for _, ev := range evs {
				if strings.Contains(fmt.Sprint(ev.Fields["reason"]), "reserved opcode") {
					return true
				}
			}
			return false
		})
		// The other session and new requests go on.
		testkit.WaitFor(t, "the other shell after", func() bool {
			_, _ = term.Write([]byte("echo after-$((6*7))\n"))
			return strings.Contains(out.String(), "after-42")
		})
		if r := kubectl(t, kubeconfig, "get", "pods", "-n", "default"); r.Code != 0 || !strings.Contains(r.Stdout, "shell") {
			t.Fatalf("get pods after: %s", r)
		}
	})
}

func isClosed(err error) bool {
	return err == io.EOF || strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "closed")
}

// kubeWS is a hand-made WebSocket client (v5.channel.k8s.io), so a test
// can send frames kubectl never would.
type kubeWS struct {
	conn net.Conn
	r    *bufio.Reader
	out  bytes.Buffer
}

func dialKubeWebSocket(t *testing.T, proxyAddr, home, path string) *kubeWS {
	t.Helper()
	p, err := client.LoadProfile(home)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := p.KubeCredential()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(cred.CertPEM, cred.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := p.TLSCAPEM()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	host, _, _ := net.SplitHostPort(proxyAddr)
	conn, err := tls.Dial("tcp", proxyAddr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: host, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n", path, proxyAddr, base64.StdEncoding.EncodeToString(key))
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("upgrade: %s %s", resp.Status, b)
	}
	return &kubeWS{conn: conn, r: r}
}

// send writes one masked frame.
func (w *kubeWS) send(t *testing.T, opcode byte, payload []byte) {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte(0x80 | opcode)
	if len(payload) < 126 {
		b.WriteByte(0x80 | byte(len(payload)))
	} else {
		b.WriteByte(0x80 | 126)
		_ = binary.Write(&b, binary.BigEndian, uint16(len(payload)))
	}
	mask := []byte{1, 2, 3, 4}
	b.Write(mask)
	for i, c := range payload {
		b.WriteByte(c ^ mask[i%4])
	}
	if _, err := w.conn.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// readUntil reads the server's frames until stdout holds want.
func (w *kubeWS) readUntil(t *testing.T, want string) {
	t.Helper()
	_ = w.conn.SetReadDeadline(patience.Deadline(t))
	defer func() { _ = w.conn.SetReadDeadline(time.Time{}) }()
	for !strings.Contains(w.out.String(), want) {
		var h [2]byte
		if _, err := io.ReadFull(w.r, h[:]); err != nil {
			t.Fatalf("read frame: %v (stdout so far %q)", err, w.out.String())
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var l uint16
			_ = binary.Read(w.r, binary.BigEndian, &l)
			n = int(l)
		case 127:
			var l uint64
			_ = binary.Read(w.r, binary.BigEndian, &l)
			n = int(l)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(w.r, p); err != nil {
			t.Fatal(err)
		}
		if h[0]&0x0f == 0x2 && len(p) > 0 && p[0] == 1 {
			w.out.Write(p[1:])
		}
	}
}
