package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/syncbuf"
)

// A fleet of simulated nodes in a child process (this binary,
// re-executed): in-process proxies and their nodes' tunnels would need two
// descriptors per tunnel in one process, more than its hard limit allows
// for 10,000 nodes. The child runs every node's tunnel (the node's own
// reconnecting code) until its stdin closes.

// simFleetEnv names the child's file of node identities.
const simFleetEnv = "WARDEN_BENCH_SIM_FLEET"

// maybeRunSimFleet runs this process as a fleet child if it was started as
// one, and reports whether it was.
func maybeRunSimFleet() bool {
	path := os.Getenv(simFleetEnv)
	if path == "" {
		return false
	}
	if err := runSimFleet(path); err != nil {
		fmt.Fprintln(os.Stderr, "sim fleet:", err)
		os.Exit(1)
	}
	return true
}

func runSimFleet(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var ds []clustertest.SimNodeData
	if err := json.Unmarshal(data, &ds); err != nil {
		return err
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	var wg sync.WaitGroup
	for i, d := range ds {
		n, err := clustertest.NewSimNode(d)
		if err != nil {
			return err
		}
		wg.Go(func() { n.Run(ctx) })
		// Pace the dials a little so the proxy's bound on handshakes in
		// flight (512) is not what is measured.
		if i%200 == 199 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	wg.Wait()
	return nil
}

// startSimFleet runs nodes' tunnels in a child process; the returned stop
// ends it (and every tunnel) and waits for it.
func startSimFleet(b *testing.B, nodes []*clustertest.SimNode) (stop func()) {
	ds := make([]clustertest.SimNodeData, len(nodes))
	for i, n := range nodes {
		ds[i] = n.Data()
	}
	data, err := json.Marshal(ds)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "fleet.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), simFleetEnv+"="+path)
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			in.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					b.Logf("sim fleet child: %v: %s", err, out.String())
				}
			case <-time.After(time.Minute):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	b.Cleanup(stop)
	return stop
}
