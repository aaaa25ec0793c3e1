package bench

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/patience"
)

// liveSessions holds n `ssh -tt HOST 'echo ready; sleep infinity'` sessions
// open until closed.
type liveSessions struct {
	cmds   []*exec.Cmd
	stdins []io.WriteCloser
}

// openSessions starts n interactive sessions on args and returns once
// every one has printed "ready" (its shell runs on the node).
func openSessions(tb testing.TB, n int, args []string) *liveSessions {
	tb.Helper()
	s := &liveSessions{}
	tb.Cleanup(s.close)
	ready := make(chan error, n)
	for i := 0; i < n; i++ {
		full := append(append([]string{"-tt"}, args...), "echo ready; exec sleep infinity")
		cmd := exec.Command("ssh", full...)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			tb.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			tb.Fatal(err)
		}
		var errb strings.Builder
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		s.cmds = append(s.cmds, cmd)
		s.stdins = append(s.stdins, stdin)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "ready") {
					ready <- nil
					_, _ = io.Copy(io.Discard, stdout)
					return
				}
			}
			ready <- fmt.Errorf("session ended before it was ready: %s", errb.String())
		}()
	}
	timeout := time.After(patience.Left(tb))
	for i := 0; i < n; i++ {
		select {
		case err := <-ready:
			if err != nil {
				tb.Fatal(err)
			}
		case <-timeout:
			tb.Fatalf("only %d of %d sessions became ready", i, n)
		}
	}
	return s
}

// close ends the sessions: the ssh clients this benchmark started, by pid.
func (s *liveSessions) close() {
	for _, in := range s.stdins {
		in.Close()
	}
	for _, c := range s.cmds {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range s.cmds {
		_ = c.Wait()
	}
	s.cmds, s.stdins = nil, nil
}

// sshdSessionPss sums the proportional set size (MiB) of the sshd
// processes serving sessions (the listener's sshd descendants).
func sshdSessionPss(tb testing.TB, listener int) (float64, int) {
	tb.Helper()
	total, n := 0.0, 0
	for _, pid := range descendants(listener) {
		if comm(pid) != "sshd" {
			continue
		}
		kb, err := procPssKB(pid)
		if err != nil {
			continue
		}
		total += kb / 1024
		n++
	}
	return total, n
}

// BenchmarkMemory measures the real all-in-one `warden start` process
// (auth + proxy + node): its idle RSS, and the extra RSS per live
// interactive session reached through the proxy (OpenSSH ProxyJump). The
// baseline is stock sshd's memory per session (Pss of its per-session
// processes, which share pages with each other).
func BenchmarkMemory(b *testing.B) {
	freeMemory()
	ensureBenchUser(b)
	sessions := envInt(b, "WARDEN_BENCH_SESSIONS", 20)
	const nodeName = "aio"
	p := startWarden(b, "--name", nodeName)
	p.waitNodes(b, 1, time.Minute)
	idle := p.settledRSS(b)

	u := addUser(b, p.Admin, "bencher", []string{"access"}, []string{osUser})
	prof := login(b, p.ProxyAddr, u)
	cfg := writeSSHConfig(b, profileIdentity(prof), []sshHost{{Alias: nodeName, ProxyJump: osUser + "@" + p.ProxyAddr}})
	wardenArgs := []string{"-F", cfg, nodeName}

	// Churn first: what the first connections set up once, and the
	// garbage of the logins (argon2id allocates 19 MiB per hash), are not
	// per-session costs. Then measure the marginal cost: RSS with n live
	// sessions and with 2n, both after the heap has been through the same
	// kind of work, so garbage-collector timing affects both alike.
	openSessions(b, 5, wardenArgs).close()
	r0 := p.settledRSS(b)
	live1 := openSessions(b, sessions, wardenArgs)
	r1 := p.settledRSS(b)
	live2 := openSessions(b, sessions, wardenArgs)
	r2 := p.settledRSS(b)
	live2.close()
	live1.close()
	perSession := (r2 - r1) / float64(sessions)

	// Baseline: the same number of sessions on stock sshd. A separate
	// warden process keeps its CA keys to itself, so sshd trusts a
	// throwaway CA that also signs the same user key.
	keys, err := ca.GenerateKeys("bench-sshd")
	if err != nil {
		b.Fatal(err)
	}
	other, err := ca.New(keys, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	sshd := startSSHD(b, other)
	_, sshdPort := splitPort(b, sshd.Addr)
	sshdCfg := writeSSHConfig(b, throwawayIdentity(b, other, prof),
		[]sshHost{{Alias: "bench-sshd", HostName: "127.0.0.1", Port: sshdPort, HostKeyAlias: sshdAlias}})
	sshdBefore, _ := sshdSessionPss(b, sshd.PID())
	sshdLive := openSessions(b, sessions, []string{"-F", sshdCfg, "bench-sshd"})
	time.Sleep(2 * time.Second)
	sshdAfter, procs := sshdSessionPss(b, sshd.PID())
	sshdLive.close()
	sshdPer := (sshdAfter - sshdBefore) / float64(sessions)

	b.ReportMetric(idle, "idle-RSS-MiB")
	b.ReportMetric(perSession, "MiB/session")
	b.ReportMetric(sshdPer, "sshd-MiB/session")
	summary.Add(
		Row{Metric: "all-in-one warden start, idle RSS", Warden: idle, Baseline: nan, Unit: "MiB",
			Goal: Goal{Kind: AtMost, Value: 60}},
		Row{Metric: fmt.Sprintf("extra RSS per live session (%d via proxy)", sessions), Warden: perSession, Baseline: sshdPer, Unit: "MiB",
			Goal: Goal{Kind: AtMost, Value: 3},
			Note: fmt.Sprintf("warden RSS %.1f MiB with 0 sessions, %.1f MiB with %d, %.1f MiB with %d (first %d: %.2f MiB each); sshd: Pss of its %d session processes",
				r0, r1, sessions, r2, 2*sessions, sessions, (r1-r0)/float64(sessions), procs)},
	)
}
