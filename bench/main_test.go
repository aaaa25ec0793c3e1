package bench

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"

	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/node"
)

// osUser is the OS login used on both sshd and Warden nodes. Its shell is
// /bin/sh so no rc file (pyenv and friends in root's ~/.bashrc) adds
// per-command latency to either side.
const osUser = "wardenbench"

// summary collects every benchmark's rows; TestMain prints it at the end.
var summary Summary

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	// The in-process node re-executes this binary for its SFTP child.
	if node.MaybeRunChild() {
		return
	}
	// The lock fan-out re-executes it for its clients.
	if maybeRunLockClients() {
		return
	}
	// BenchmarkPostgresMulti re-executes it for its fleet of nodes.
	if maybeRunSimFleet() {
		return
	}
	code := m.Run()
	if rows := summary.Rows(); len(rows) > 0 {
		fmt.Println()
		fmt.Println("=== Warden performance summary (same run, same machine) ===")
		summary.Print(os.Stdout)
		if n := summary.Failed(); n > 0 {
			fmt.Printf("\n%d of %d goals missed.\n", n, len(rows))
		}
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// wardenBinary returns a warden binary: WARDEN_BENCH_BINARY if set, else
// one built once for the run. It also sets clustertest.WardenBinary (used
// by `warden config ssh` for the ProxyCommand).
func wardenBinary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("WARDEN_BENCH_BINARY"); p != "" {
			clustertest.WardenBinary = p
			return
		}
		binDir, binErr = os.MkdirTemp("", "warden-bench-bin-")
		if binErr == nil {
			binErr = clustertest.BuildWarden(binDir)
		}
	})
	if binErr != nil {
		tb.Fatalf("build warden: %v", binErr)
	}
	return clustertest.WardenBinary
}

// freeMemory returns to the operating system what earlier benchmarks in
// this process left: their heap is garbage by now, but Go keeps its pages
// (1.8 GB after the lock fan-out's thousand simulated nodes) and would
// release them in the background, during this benchmark's measurements.
// Call it first in every benchmark.
func freeMemory() { debug.FreeOSMemory() }

// inParallel calls fn(0) to fn(n-1), 16 at a time, and returns once all
// returned.
func inParallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// envInt reads a positive integer knob.
func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// nan marks a row without a baseline.
var nan = math.NaN()
