package kubetest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
)

// Kubelet is the one kubelet stand-in of the tests: no container runtime
// runs here, so a real kubelet API server (virtual-kubelet's node/api,
// which speaks the kubelet's exec/attach/logs/port-forward protocols)
// runs each "container" command as a local process. It serves a real Node
// object (its address and kubelet port in the node's status), and pods
// bound to that node (spec.nodeName) are what the API server sees: it
// proxies exec and logs to this server as it would to any kubelet.
type Kubelet struct {
	Node string
	Addr string
}

// StartKubelet registers node name and serves its kubelet API on a
// loopback port until the test ends.
func (c *Cluster) StartKubelet(t testing.TB, name string) *Kubelet {
	t.Helper()
	key, der := issue(t, c.caKey, c.caCert, pkixName("kubelet-"+name), true)
	pair := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	h := vkapi.PodHandler(vkapi.PodHandlerConfig{
		RunInContainer: runInContainer,
		// No container has a main process here: attach gets a shell
		// started for it (sh on a terminal when the client asks for one),
		// which ends when the client detaches.
		AttachToContainer: func(ctx context.Context, ns, pod, container string, attach vkapi.AttachIO) error {
			return runInContainer(ctx, ns, pod, container, []string{"sh"}, attach)
		},
		GetContainerLogs:  containerLogs,
		PortForward:       portForward,
		StreamIdleTimeout: 5 * time.Minute, StreamCreationTimeout: 30 * time.Second,
	}, false)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	c.Must(t, fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata: {name: %s, labels: {type: warden-test-kubelet}}\n", name), "apply", "-f", "-")
	status := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}],`+
		`"daemonEndpoints":{"kubeletEndpoint":{"Port":%d}},`+
		`"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"warden test kubelet"}]}}`, port)
	c.Must(t, "", "patch", "node", name, "--subresource=status", "--type=merge", "-p", status)
	return &Kubelet{Node: name, Addr: ln.Addr().String()}
}

// Pod is the manifest of a pod bound to the kubelet's node, one container
// "main" (its image is not used: commands run as local processes).
func (k *Kubelet) Pod(namespace, name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  nodeName: %s
  containers: [{name: main, image: local}]
`, name, namespace, k.Node)
}

// AttachablePod is Pod with a container that has stdin and a terminal,
// as kubectl attach -it wants.
func (k *Kubelet) AttachablePod(namespace, name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  nodeName: %s
  containers: [{name: main, image: local, stdin: true, tty: true}]
`, name, namespace, k.Node)
}

// runInContainer runs cmd as a local process, on a terminal when the
// client asked for one.
func runInContainer(ctx context.Context, _, _, _ string, cmd []string, attach vkapi.AttachIO) error {
	if len(cmd) == 0 {
		return errors.New("no command")
	}
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	c.Env = append(os.Environ(), "PS1=$ ")
	if attach.TTY() {
		f, err := pty.Start(c)
		if err != nil {
			return err
		}
		// Resizes stop before the terminal closes.
		var mu sync.Mutex
		closed := false
		defer func() {
			mu.Lock()
			closed = true
			f.Close()
			mu.Unlock()
		}()
		go func() {
			for size := range attach.Resize() {
				mu.Lock()
				if !closed {
					_ = pty.Setsize(f, &pty.Winsize{Rows: size.Height, Cols: size.Width})
				}
				mu.Unlock()
			}
		}()
		if in := attach.Stdin(); in != nil {
			go func() { _, _ = io.Copy(f, in) }()
		}
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(attach.Stdout(), f)
			close(done)
		}()
		err = c.Wait()
		<-done
		return exitStatus(err)
	}
	// Stdin is copied apart: Wait must not wait for a client that never
	// closes its stdin.
	if in := attach.Stdin(); in != nil {
		w, err := c.StdinPipe()
		if err != nil {
			return err
		}
		go func() { _, _ = io.Copy(w, in); w.Close() }()
	}
	if out := attach.Stdout(); out != nil {
		c.Stdout = out
	}
	if e := attach.Stderr(); e != nil {
		c.Stderr = e
	}
	return exitStatus(c.Run())
}

// exitError is a command's exit status as the kubelet's streaming server
// reports it (k8s.io/utils/exec.ExitError): an ExitCode cause in the
// Status on the error stream, which kubectl exits with.
type exitError struct{ *exec.ExitError }

func (e exitError) ExitStatus() int { return e.ExitCode() }

func exitStatus(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return exitError{ee}
	}
	return err
}

// containerLogs is a log line every 100 ms (a few lines, or without end
// when following).
func containerLogs(ctx context.Context, _, pod, _ string, opts vkapi.ContainerLogOpts) (io.ReadCloser, error) {
	r, w := io.Pipe()
	go func() {
		defer w.Close()
		for i := 0; opts.Follow || i < 3; i++ {
			if _, err := fmt.Fprintf(w, "%s log line %d\n", pod, i); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return r, nil
}

// portForward connects the stream to the port on loopback.
func portForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(c, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, c); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}
