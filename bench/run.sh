#!/usr/bin/env bash
# Warden performance harness: builds warden, then runs every benchmark in
# bench/ once (they do a fixed amount of work each) against stock OpenSSH
# sshd and real `warden start` processes, and prints a summary table:
# metric, warden, baseline, ratio, goal, pass/FAIL.
#
#   bench/run.sh                       # everything, 10,000 simulated nodes
#   WARDEN_BENCH_NODES=1000 bench/run.sh
#   bench/run.sh -bench 'SSH|Memory'   # a subset (go test -bench regexp)
#
# Knobs (environment): WARDEN_BENCH_NODES (10000), WARDEN_BENCH_RUNS (30),
# WARDEN_BENCH_BULK_BYTES (1073741824), WARDEN_BENCH_BULK_RUNS (3),
# WARDEN_BENCH_SESSIONS (20), WARDEN_BENCH_PG_LS_NODES (10000),
# WARDEN_BENCH_PG_FANOUT_NODES (1000), WARDEN_BENCH_PG_RECONNECT_NODES (1000),
# WARDEN_BENCH_PG_PROP_RUNS (100); BenchmarkPostgresMulti needs the
# PostgreSQL server of scripts/postgres-peer.sh. Runs as root: it creates the OS user
# "wardenbench" (shell /bin/sh), starts sshd on a loopback port and raises
# RLIMIT_NOFILE. A log is kept in $WARDEN_BENCH_LOG (default
# /tmp/warden-bench-<time>.log).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "run.sh must run as root (it creates an OS user and starts sshd)" >&2
	exit 2
fi
for bin in /usr/sbin/sshd ssh; do
	command -v "$bin" >/dev/null || { echo "missing $bin (apt-get install openssh-server openssh-client)" >&2; exit 2; }
done

export GOFLAGS="${GOFLAGS:--mod=mod}" CGO_ENABLED=0
bindir=$(mktemp -d /tmp/warden-bench-bin.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
chmod 755 "$bindir"
echo "building warden..." >&2
go build -o "$bindir/warden" ./cmd/warden
export WARDEN_BENCH_BINARY="$bindir/warden"

args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
	args=(-bench .)
fi
log=${WARDEN_BENCH_LOG:-/tmp/warden-bench-$(date +%Y%m%d-%H%M%S).log}
echo "nodes=${WARDEN_BENCH_NODES:-10000}; log: $log" >&2
start=$(date +%s)
go test ./bench -run '^$' -benchtime 1x -timeout 60m "${args[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "total time: $(( $(date +%s) - start )) s; log: $log" >&2
exit "$status"
