// Package bench is Warden's performance harness. It holds no tests of
// behaviour: its Benchmark functions start real clusters, a stock OpenSSH
// sshd as the baseline, real `warden start` processes and the real OpenSSH
// client, measure side by side in one run, and print a summary table of
// ratios against the baseline and the product goals (issues 2 to 5).
//
// Run everything with bench/run.sh, or:
//
//	go test ./bench -run '^$' -bench . -benchtime 1x -timeout 30m
//
// The benchmarks do a fixed amount of work per call (they ignore b.N), so
// -benchtime 1x is the intended setting. Knobs (environment):
// WARDEN_BENCH_NODES (simulated nodes on one proxy, default 10000),
// WARDEN_BENCH_RUNS (connect latency samples per path, default 30),
// WARDEN_BENCH_BULK_BYTES (bytes per bulk transfer, default 1 GiB),
// WARDEN_BENCH_BULK_RUNS (bulk transfers per path, default 3),
// WARDEN_BENCH_SESSIONS (live sessions for the memory test, default 20),
// WARDEN_BENCH_BINARY (a prebuilt warden binary; built if unset),
// WARDEN_BENCH_LOCK_NODES (node agents for the lock fan-out, default 1000),
// WARDEN_BENCH_REC_BYTES and WARDEN_BENCH_REC_RUNS (recording overhead:
// bytes per session, default 128 MiB, and on/off pairs, default 30).
// BenchmarkPostgresMulti (issue 26: two instances on one PostgreSQL
// database against the SQLite all-in-one; needs the server of
// scripts/postgres-peer.sh): WARDEN_BENCH_PG_LS_NODES (default 10000),
// WARDEN_BENCH_PG_FANOUT_NODES (default 1000),
// WARDEN_BENCH_PG_RECONNECT_NODES (default 1000) and
// WARDEN_BENCH_PG_PROP_RUNS (default 100).
//
// Profiling: WARDEN_BENCH_LOCK_PROFILE (shell sessions' fan-out),
// WARDEN_BENCH_LOCK_PROFILE_FWD (port forwards' fan-out) and
// WARDEN_BENCH_REC_PROFILE (the measured recording runs) name a file for a
// CPU profile, or for an execution trace when it ends in .trace.
package bench
