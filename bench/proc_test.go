package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/patience"
)

// wardenProc is a real `warden start` child process.
type wardenProc struct {
	cmd       *exec.Cmd
	DataDir   string
	ProxyAddr string
	// MetricsURL is where the process serves /metrics.
	MetricsURL string
	Admin      *api.Client
	logMu      sync.Mutex
	log        bytes.Buffer
}

var (
	proxyLine   = regexp.MustCompile(`proxy:\s+(\S+)`)
	metricsLine = regexp.MustCompile(`metrics:\s+(\S+)`)
)

// startWarden runs `warden start ARGS...` with a fresh data directory and
// the proxy on a free loopback port, waits until it serves, and stops it
// when tb ends.
func startWarden(tb testing.TB, args ...string) *wardenProc {
	tb.Helper()
	bin := wardenBinary(tb)
	dir := tb.TempDir()
	full := append([]string{"start", "--data-dir", dir, "--proxy-listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(bin, full...)
	cmd.Env = append(os.Environ(), "WARDEN_DATA_DIR="+dir)
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p := &wardenProc{cmd: cmd, DataDir: dir}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start warden: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	// The start banner names the proxy, then the metrics listener.
	addr := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		proxyAddr, found := "", false
		for sc.Scan() {
			line := sc.Text()
			p.logMu.Lock()
			if p.log.Len() < 1<<20 {
				p.log.WriteString(line + "\n")
			}
			p.logMu.Unlock()
			if m := proxyLine.FindStringSubmatch(line); m != nil && proxyAddr == "" {
				proxyAddr = m[1]
			}
			if m := metricsLine.FindStringSubmatch(line); m != nil && proxyAddr != "" && !found {
				found = true
				addr <- [2]string{proxyAddr, m[1]}
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			tb.Fatalf("warden start exited:\n%s", p.Log())
		}
		p.ProxyAddr, p.MetricsURL = a[0], a[1]
	case <-time.After(patience.Left(tb)):
		tb.Fatalf("warden start did not report its proxy address:\n%s", p.Log())
	}
	admin, _, err := client.AdminClient(dir, tb.TempDir())
	if err != nil {
		tb.Fatalf("admin client: %v", err)
	}
	tb.Cleanup(admin.Close)
	p.Admin = admin
	return p
}

// PID is the child's process id.
func (p *wardenProc) PID() int { return p.cmd.Process.Pid }

// Log returns the child's captured stderr (first MiB).
func (p *wardenProc) Log() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// waitNodes waits until the proxy lists at least n nodes.
func (p *wardenProc) waitNodes(tb testing.TB, n int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		nodes, err := p.Admin.ListNodes(context.Background(), nil)
		if err == nil && len(nodes) >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waiting for %d nodes: %d (err %v)\n%s", n, len(nodes), err, p.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metric reads one unlabelled gauge or counter from the process's /metrics.
func (p *wardenProc) metric(name string) (float64, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(p.MetricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", p.MetricsURL, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// addUser creates a Warden user through the admin API and completes the
// signup, like clustertest.Cluster.AddUser but for any cluster.
func addUser(tb testing.TB, admin *api.Client, name string, roles, logins []string) *clustertest.User {
	tb.Helper()
	ctx := context.Background()
	inv, err := admin.CreateUser(ctx, auth.CreateUserRequest{Name: name, Roles: roles, Logins: logins})
	if err != nil {
		tb.Fatalf("create user %s: %v", name, err)
	}
	ch, err := admin.BeginSignup(ctx, inv.Token)
	if err != nil {
		tb.Fatalf("begin signup: %v", err)
	}
	u := &clustertest.User{Name: name, Password: "bench password " + name, TOTPSecret: ch.Secret}
	if _, err := admin.CompleteSignup(ctx, auth.SignupRequest{Token: inv.Token, Password: u.Password, OTP: u.NextOTP(tb)}); err != nil {
		tb.Fatalf("complete signup: %v", err)
	}
	return u
}

// login logs u in to the proxy at addr into a new profile directory.
func login(tb testing.TB, addr string, u *clustertest.User) *client.Profile {
	tb.Helper()
	dir := tb.TempDir()
	p, err := client.Login(context.Background(), dir, client.LoginOptions{Proxy: addr, User: u.Name,
		Password: u.Password, OTP: u.NextOTP(tb), Out: io.Discard})
	if err != nil {
		tb.Fatalf("login %s: %v", u.Name, err)
	}
	return p
}

// procStatusKB reads a "Field:   123 kB" line of /proc/PID/status.
func procStatusKB(pid int, field string) (float64, error) {
	return procFieldKB(filepath.Join("/proc", strconv.Itoa(pid), "status"), field)
}

// procPssKB reads the proportional set size of a process.
func procPssKB(pid int) (float64, error) {
	return procFieldKB(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"), "Pss")
}

func procFieldKB(path, field string) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseFloat(f[0], 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}

// settledRSS waits, then returns the median VmRSS in MiB of samples taken
// once a second.
func settledRSS(tb testing.TB, pid int, wait time.Duration, samples int) float64 {
	tb.Helper()
	time.Sleep(wait)
	var xs []float64
	for i := 0; i < samples; i++ {
		if i > 0 {
			time.Sleep(time.Second)
		}
		kb, err := procStatusKB(pid, "VmRSS")
		if err != nil {
			tb.Fatalf("rss of %d: %v", pid, err)
		}
		xs = append(xs, kb/1024)
	}
	return Median(xs)
}

// settledRSS returns the process's RSS (MiB) once it has settled: after
// two garbage collections since the call (the scrapes of /metrics that
// watch for them allocate just enough to bring them on) and a few seconds
// for the runtime to return freed pages, the median of five samples.
// Without this, garbage from the last burst of work (argon2id alone
// allocates 19 MiB per password hash) dominates the figure.
func (p *wardenProc) settledRSS(tb testing.TB) float64 {
	tb.Helper()
	const gcs = "go_gc_duration_seconds_count"
	gc0, err := p.metric(gcs)
	if err != nil {
		tb.Fatalf("read %s: %v", gcs, err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		time.Sleep(100 * time.Millisecond)
		gc, err := p.metric(gcs)
		if err == nil && gc >= gc0+2 {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no garbage collection in the warden process for 3 minutes (%v)", err)
		}
	}
	return settledRSS(tb, p.PID(), 3*time.Second, 5)
}

// descendants returns the pids of all processes below root.
func descendants(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command may contain spaces: fields follow the last ')'.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// comm returns a process's command name.
func comm(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}
