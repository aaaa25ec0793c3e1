//go:build integration

package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
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
	"github.com/warden-sh/warden/internal/kubetest"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

const kubeRoles = `
kind: role
metadata: {name: contractor}
spec:
  allow:
    request:
      roles: [kube-member]
      thresholds: {approve: 2}
---
kind: role
metadata: {name: kube-member}
spec:
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: ["system:masters"]
---
kind: role
metadata: {name: kube-reviewer}
spec:
  allow:
    review_requests: {roles: [kube-member]}
---
kind: role
metadata: {name: session-lister}
spec:
  allow:
    rules:
      - {resources: [session], verbs: [list]}
    join_sessions:
      - {roles: [kube-member], modes: [observer, peer]}
---
kind: role
metadata: {name: kube-viewer}
spec:
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: [viewers]
    kubernetes_resources:
      - {kind: pods, namespace: default, verbs: [get, list, watch]}
      - {kind: selfsubjectreviews}
`

// kubeEnv is StartKube's environment, for this package's tests.
type kubeEnv struct {
	c    *Cluster
	kc   *kubetest.Cluster
	t    testing.TB
	name string
	env  *KubeEnv
}

func startKubeEnv(t testing.TB) *kubeEnv {
	t.Helper()
	e := StartKube(t, kubeRoles)
	return &kubeEnv{c: e.C, kc: e.KC, t: t, name: e.Name, env: e}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// kubeLogin writes a kubeconfig context for cluster into a kubeconfig of
// its own in the profile home and returns its path.
func (e *kubeEnv) kubeLogin(home, cluster string) string {
	e.t.Helper()
	return e.env.KubeLogin(home, cluster)
}

// kubectl runs the real kubectl with a user's kubeconfig; one that runs
// for more than a minute fails the test.
func kubectl(t *testing.T, kubeconfig string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig, "--request-timeout", "20s"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("kubectl %s did not finish in a minute:\nstdout: %s\nstderr: %s", strings.Join(args, " "), out.String(), errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

type whoami struct {
	Status struct {
		UserInfo struct {
			Username string   `json:"username"`
			Groups   []string `json:"groups"`
		} `json:"userInfo"`
	} `json:"status"`
}

func kubeWhoami(t *testing.T, kubeconfig string, extra ...string) whoami {
	t.Helper()
	r := kubectl(t, kubeconfig, append([]string{"auth", "whoami", "-o", "json"}, extra...)...)
	if r.Code != 0 {
		t.Fatalf("kubectl auth whoami: %s", r)
	}
	var w whoami
	if err := json.Unmarshal([]byte(r.Stdout), &w); err != nil {
		t.Fatalf("whoami output: %v\n%s", err, r.Stdout)
	}
	return w
}

// The seed's demos 2 and 3 with kubectl: a contractor is refused, requests
// kube-member, two reviewers approve, kubectl works without a new login;
// a lock ends their live watch at once and refuses the next call.
func TestKubeJustInTimeAndLock(t *testing.T) {
	e := startKubeEnv(t)
	c := e.c
	contractor := c.AddUser("contractor", []string{"contractor"}, nil)
	alice := c.AddUser("alice", []string{"kube-reviewer"}, nil)
	bob := c.AddUser("bob", []string{"kube-reviewer"}, nil)

	// Not listed (no role allows the cluster yet), but the context is
	// written: it works once access is approved.
	home := c.Login(contractor)
	if r := c.Warden(home, nil, "kube", "ls"); r.Code != 0 || strings.Contains(r.Stdout, "test-k8s") {
		t.Fatalf("kube ls before access: %s", r)
	}
	kubeconfig := filepath.Join(home, "kubeconfig")
	if r := c.Warden(home, nil, "kube", "login", "test-k8s", "--kubeconfig", kubeconfig, "--binary", WardenBinary); r.Code != 0 ||
		!strings.Contains(r.Stderr, "not allowed by your roles now") {
		t.Fatalf("kube login before access: %s", r)
	}
	r := kubectl(t, kubeconfig, "get", "nodes")
	if r.Code == 0 || !strings.Contains(r.Stderr, "Forbidden") || !strings.Contains(r.Stderr, "warden request create --roles kube-member") {
		t.Fatalf("kubectl before access: %s", r)
	}

	r = c.Warden(home, nil, "request", "create", "--roles", "kube-member", "--reason", "INC-7", "--nowait")
	if r.Code != 0 {
		t.Fatalf("request create: %s", r)
	}
	id := regexp.MustCompile(`Request (\S+) created`).FindStringSubmatch(r.Stdout)[1]
	for _, u := range []*User{alice, bob} {
		if r := c.Warden(c.Login(u), nil, "request", "review", id, "--approve"); r.Code != 0 {
			t.Fatalf("review: %s", r)
		}
	}
	// No new login: the credential plugin picks the approved request up.
	if r := kubectl(t, kubeconfig, "get", "nodes"); r.Code != 0 || !strings.Contains(r.Stdout, "kube-node-1") {
		t.Fatalf("kubectl get nodes after approval: %s", r)
	}
	if w := kubeWhoami(t, kubeconfig); w.Status.UserInfo.Username != "contractor" || !contains(w.Status.UserInfo.Groups, "system:masters") {
		t.Fatalf("whoami: %+v", w)
	}
	if r := c.Warden(home, nil, "kube", "ls"); r.Code != 0 || !strings.Contains(r.Stdout, "test-k8s") {
		t.Fatalf("kube ls with access: %s", r)
	}
	// apply and delete work as system:masters.
	if r := Run(t, strings.NewReader("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: jit, namespace: default}\ndata: {k: v}\n"),
		"kubectl", "--kubeconfig", kubeconfig, "apply", "-f", "-"); r.Code != 0 {
		t.Fatalf("kubectl apply: %s", r)
	}
	if r := kubectl(t, kubeconfig, "delete", "configmap", "jit", "-n", "default"); r.Code != 0 {
		t.Fatalf("kubectl delete: %s", r)
	}

	// exec, with and without a terminal (the kubelet stand-in runs the
	// command as a local process).
	if r := kubectl(t, kubeconfig, "exec", "shell", "-n", "default", "--", "echo", "hello from the pod"); r.Code != 0 || !strings.Contains(r.Stdout, "hello from the pod") {
		t.Fatalf("kubectl exec: %s", r)
	}
	shell := exec.Command("kubectl", "--kubeconfig", kubeconfig, "exec", "-it", "shell", "-n", "default", "--", "sh")
	term, err := pty.Start(shell)
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	var sout syncbuf.Buffer
	go func() { _, _ = io.Copy(&sout, term) }()
	if _, err := term.Write([]byte("echo kube-$((6*7))-marker\n")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the shell's answer", func() bool { return strings.Contains(sout.String(), "kube-42-marker") })
	// The session is live in sessions ls, with a terminal (recorded).
	admin := t.TempDir()
	sessionID := liveKubeSession(t, c, admin, "contractor", "kube-exec")
	// It can be watched (observer), by one whose roles allow joining the
	// contractor's and seeing the pod.
	lister := c.Login(c.AddUser("lister", []string{"session-lister", "kube-viewer"}, nil))
	nosy := c.Login(c.AddUser("nosy", []string{"session-lister"}, nil))
	if r := c.Warden(nosy, nil, "join", sessionID); r.Code == 0 || !strings.Contains(r.Stderr, "needs get on the pod") {
		t.Fatalf("join by one who may not see the pod: %s", r)
	}
	observer := exec.Command(WardenBinary, "--data-dir", c.DataDir, "--home", lister, "join", sessionID)
	var oout syncbuf.Buffer
	observer.Stdout, observer.Stderr = &oout, &oout
	if err := observer.Start(); err != nil {
		t.Fatal(err)
	}
	observerDone := make(chan error, 1)
	go func() { observerDone <- observer.Wait() }()
	t.Cleanup(func() { _ = observer.Process.Kill() })
	testkit.WaitFor(t, "the observer in the session's participants", func() bool {
		r := c.Warden(admin, nil, "sessions", "ls")
		return strings.Contains(r.Stdout, sessionID) && strings.Contains(r.Stdout, "contractor,lister")
	}, &oout)
	if _, err := term.Write([]byte("echo observed-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the observer's view", func() bool { return strings.Contains(oout.String(), "observed-42") }, &oout)
	// A lock on an observer ends their view, not the session.
	watcher := c.Login(c.AddUser("watcher", []string{"session-lister", "kube-viewer"}, nil))
	second := exec.Command(WardenBinary, "--data-dir", c.DataDir, "--home", watcher, "join", sessionID)
	var wout syncbuf.Buffer
	second.Stdout, second.Stderr = &wout, &wout
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	secondDone := make(chan error, 1)
	go func() { secondDone <- second.Wait() }()
	t.Cleanup(func() { _ = second.Process.Kill() })
	testkit.WaitFor(t, "the second observer in the participants", func() bool {
		return strings.Contains(c.Warden(admin, nil, "sessions", "ls").Stdout, "watcher")
	}, &wout)
	if r := c.Warden(admin, nil, "lock", "--user", "watcher", "--message", "stop watching"); r.Code != 0 {
		t.Fatalf("lock the second observer: %s", r)
	}
	select {
	case <-secondDone:
		if !strings.Contains(wout.String(), "stop watching") {
			t.Fatalf("the locked observer's output: %s", wout.String())
		}
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatalf("the locked observer went on watching:\n%s", wout.String())
	}
	if _, err := term.Write([]byte("echo still-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the session after the observer's lock", func() bool {
		return strings.Contains(sout.String(), "still-42") && strings.Contains(oout.String(), "still-42")
	}, &oout)

	// Long-lived requests: the shell above, logs -f and a watch, each
	// ends within a second of the lock.
	var live []*liveKubectl
	live = append(live, &liveKubectl{name: "exec -it", cmd: shell, out: &sout})
	for _, args := range [][]string{{"logs", "-f", "shell", "-n", "default"}, {"get", "configmaps", "-n", "default", "--watch"}} {
		l := &liveKubectl{name: strings.Join(args[:2], " "), cmd: exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...), out: &syncbuf.Buffer{}}
		l.cmd.Stdout, l.cmd.Stderr = l.out, l.out
		if err := l.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		live = append(live, l)
	}
	for _, l := range live {
		l.exited = make(chan error, 1)
		go func() { l.exited <- l.cmd.Wait() }()
		t.Cleanup(func() { _ = l.cmd.Process.Kill() })
	}
	testkit.WaitFor(t, "the first lines of logs -f and the watch", func() bool {
		return strings.Contains(live[1].out.String(), "shell log line") && strings.Contains(live[2].out.String(), "cm1")
	})
	// All are live at the proxy before the lock (their first lines came
	// through it).
	locked := time.Now()
	if r := c.Warden(t.TempDir(), nil, "lock", "--user", "contractor", "--message", "contract ended"); r.Code != 0 {
		t.Fatalf("lock: %s", r)
	}
	for _, l := range live {
		select {
		case <-l.exited:
			if d := time.Since(locked); d > time.Second+500*time.Millisecond {
				t.Fatalf("kubectl %s ended %s after the lock", l.name, d)
			}
			t.Logf("kubectl %s ended %s after the lock command returned", l.name, time.Since(locked).Round(time.Millisecond))
		case <-time.After(time.Until(patience.Deadline(t))):
			t.Fatalf("kubectl %s outlived the lock:\n%s", l.name, l.out.String())
		}
	}
	r = kubectl(t, kubeconfig, "get", "pods")
	if r.Code == 0 || !strings.Contains(r.Stderr, "contract ended") {
		t.Fatalf("kubectl after the lock: %s", r)
	}
	// The observer's view ended with the session.
	select {
	case <-observerDone:
		if !strings.Contains(oout.String(), "the session ended") {
			t.Fatalf("observer output: %s", oout.String())
		}
	case <-time.After(time.Until(patience.Deadline(t))):
		t.Fatalf("the observer outlived the session:\n%s", oout.String())
	}

	// The exec session was recorded: listed, complete, it plays, and its
	// typed command is found; its end says why.
	checkKubeRecording(t, c, admin, sessionID, "kube-42-marker", "echo kube-$((6*7))-marker")
	evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{SessionID: sessionID, Type: audit.SessionEnd})
	if err != nil || len(evs) != 1 || !strings.Contains(fmt.Sprint(evs[0].Fields["reason"]), "contract ended") {
		t.Fatalf("session.end of the locked exec: %v %+v", err, evs)
	}
	// exec without a terminal is audited with its command and exit code.
	execs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.Exec, User: "contractor", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var plain bool
	for _, ev := range execs {
		plain = plain || (ev.Fields["command"] == "echo hello from the pod" && ev.Fields["tty"] == false &&
			fmt.Sprint(ev.Fields["exit_code"]) == "0" && ev.Fields["kubernetes_pod"] == "shell")
	}
	if !plain {
		t.Fatalf("no exec event for the command without a terminal: %+v", execs)
	}

	// Every request is audited: refusals and successes (stored in batches,
	// a moment after the request: proxy/kubeaudit.go).
	testkit.WaitFor(t, "the kube.request events: a refusal, the node listing, the exec with its command", func() bool {
		evs, err = c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.KubeRequest, User: "contractor", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var refused, listed, execed bool
		for _, ev := range evs {
			if ev.Fields["cluster"] != "test-k8s" {
				continue
			}
			refused = refused || (!ev.Success && fmt.Sprint(ev.Fields["status"]) == "403")
			listed = listed || (ev.Success && ev.Fields["verb"] == "list" && ev.Fields["resource"] == "nodes")
			execed = execed || (ev.Fields["resource"] == "pods/exec" && ev.Fields["name"] == "shell" &&
				strings.Contains(fmt.Sprint(ev.Fields["command"]), "hello from the pod"))
		}
		return refused && listed && execed
	})
}

// liveKubeSession waits for user's live kube session of kind (with a
// terminal) in warden sessions ls and returns its id.
func liveKubeSession(t *testing.T, c *Cluster, admin, user, kind string) string {
	t.Helper()
	return liveKubeSessionFrom(t, func() Result { return c.Warden(admin, nil, "sessions", "ls", "-o", "json") }, user, kind)
}

// liveKubeSessionFrom is liveKubeSession with the listing run by ls
// (`sessions ls -o json` as some admin).
func liveKubeSessionFrom(t *testing.T, ls func() Result, user, kind string) string {
	t.Helper()
	var id string
	testkit.WaitFor(t, "the "+kind+" session in sessions ls", func() bool {
		r := ls()
		var list []struct {
			ID, User, Kind string
			TTY            bool
		}
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &list) != nil {
			return false
		}
		for _, ls := range list {
			if ls.User == user && ls.Kind == kind && ls.TTY {
				id = ls.ID
			}
		}
		return id != ""
	})
	return id
}

// checkKubeRecording checks a kube session's recording: complete (its
// recording.complete audited), in recordings ls, verified, it plays with
// output in it, and a search for typed finds it.
func checkKubeRecording(t *testing.T, c *Cluster, admin, id, output, typed string) {
	t.Helper()
	testkit.WaitFor(t, "recording.complete of "+id, func() bool {
		evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{SessionID: id, Type: audit.RecordingComplete})
		return err == nil && len(evs) == 1
	})
	if r := c.Warden(admin, nil, "recordings", "ls"); r.Code != 0 || !strings.Contains(r.Stdout, id) {
		t.Fatalf("recordings ls: %s", r)
	}
	if r := c.Warden(admin, nil, "recordings", "verify", id); r.Code != 0 {
		t.Fatalf("recordings verify: %s", r)
	}
	if r := c.Warden(admin, nil, "play", id, "--speed", "1000"); r.Code != 0 || !strings.Contains(r.Stdout, output) {
		t.Fatalf("play: %s", r)
	}
	if r := c.Warden(admin, nil, "recordings", "search", typed); r.Code != 0 || !strings.Contains(r.Stdout, id) {
		t.Fatalf("recordings search %q: %s", typed, r)
	}
}

// liveKubectl is a kubectl process that keeps a request open.
type liveKubectl struct {
	name   string
	cmd    *exec.Cmd
	out    *syncbuf.Buffer
	exited chan error
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// kubernetes_resources limit what a role reaches; a client's own
// impersonation headers, or the proxy's decision header, never pass; a
// guessed cluster name is refused like a forbidden one; an unreachable
// API server answers 503 with the reason.
func TestKubeResourcesAndImpersonation(t *testing.T) {
	e := startKubeEnv(t)
	c := e.c
	viewer := c.AddUser("viewer", []string{"kube-viewer"}, nil)
	home := c.Login(viewer)
	kubeconfig := e.kubeLogin(home, "test-k8s")

	if r := kubectl(t, kubeconfig, "get", "pods", "-n", "default"); r.Code != 0 {
		t.Fatalf("get pods in default: %s", r)
	}
	for _, args := range [][]string{
		{"get", "pods", "-n", "kube-system"},
		{"get", "configmaps", "-n", "default"},
		{"delete", "pod", "p1", "-n", "default"},
		{"get", "nodes"},
	} {
		r := kubectl(t, kubeconfig, args...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "not allowed on kubernetes cluster \"test-k8s\" by your roles") {
			t.Fatalf("kubectl %s: %s", strings.Join(args, " "), r)
		}
	}

	// kubectl --as and --as-group send Impersonate-* headers: the agent
	// drops them and impersonates what the decision says.
	w := kubeWhoami(t, kubeconfig, "--as", "kube-admin", "--as-group", "system:masters")
	if w.Status.UserInfo.Username != "viewer" || contains(w.Status.UserInfo.Groups, "system:masters") || !contains(w.Status.UserInfo.Groups, "viewers") {
		t.Fatalf("whoami with client impersonation headers: %+v", w)
	}

	// A hand-made request with the decision header and a bearer token.
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
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	defer hc.CloseIdleConnections()
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	req, _ := http.NewRequest("POST", "https://"+c.ProxyAddr()+"/kube/test-k8s/apis/authentication.k8s.io/v1/selfsubjectreviews", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Warden-Kube-Identity", `{"cluster":"test-k8s","user":"kube-admin","groups":["system:masters"]}`)
	req.Header.Set("Impersonate-Uid", "1")
	req.Header.Add("Impersonate-Extra-Scopes", "all")
	req.Header.Set("Authorization", "Bearer not-a-token")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var forged whoami
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(out, &forged) != nil || forged.Status.UserInfo.Username != "viewer" ||
		contains(forged.Status.UserInfo.Groups, "system:masters") || bytes.Contains(out, []byte("Scopes")) {
		t.Fatalf("forged headers: %s %s", resp.Status, out)
	}

	// Without a client certificate, nothing.
	anon := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer anon.CloseIdleConnections()
	resp, err = anon.Get("https://" + c.ProxyAddr() + "/kube/test-k8s/api/v1/namespaces/default/pods")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no certificate: %s", resp.Status)
	}

	// A guessed name answers as a forbidden cluster does.
	guess := e.kubeLogin(home, "no-such-cluster")
	if r := kubectl(t, guess, "get", "pods", "-n", "default"); r.Code == 0 || !strings.Contains(r.Stderr, `kubernetes cluster "no-such-cluster" is not connected or not allowed`) {
		t.Fatalf("guessed cluster: %s", r)
	}
	// The dead cluster: allowed, but its API server is down.
	dead := e.kubeLogin(home, "dead")
	if r := kubectl(t, dead, "get", "pods", "-n", "default"); r.Code == 0 || !strings.Contains(r.Stderr, `kubernetes cluster "dead" is unreachable`) {
		t.Fatalf("dead cluster: %s", r)
	}
}
