#!/usr/bin/env bash
# Cluster-mode benchmark (issue 5): 1, 2 and 3 `shoal agent`s on one etcd and one MinIO,
# all on 127.0.0.1, at batch timeouts 50 ms and 250 ms.
#
#   bench/cluster.sh [extra bench/cluster.py flags...]
#
# Builds release binaries (as bench/run.sh), starts etcd and MinIO in a temporary
# directory on free loopback ports (the process harness of tests/cluster/cluster.py),
# then for each agent count N and batch timeout T, with a fresh etcd prefix and bucket
# prefix each (bench-nN-T):
#   - produce R records of 1 KiB with shoal-bench through the N agents (8 partitions,
#     4 producers, acks=-1; tailing consumer for end-to-end latency; catch-up read);
#   - produce R more records into a second topic with --max-in-flight 20 (4x the default
#     window of bytes in flight);
#   - SIGTERM the agents and start them again (empty caches), read everything cold
#     through a 2-member consumer group (shoal-bench --records 0 --group-consumers 2);
#     with N > 1, once more with every agent in its own zone (no distributed cache);
#   - for N = 1, two more agents join and the three read the data cold (cache on, off).
# Object-store PUTs/GETs and distributed-cache counters come from every agent's /metrics
# (shoal_object_store_requests_total, shoal_peer_chunks_total,
# shoal_chunk_cache_requests_total). Agents run with --compaction-target-bytes 0 so the
# cold reads see the flush objects (see docs/benchmarks.md). Prints markdown tables at
# the end; about 4 minutes on 2 cores with the defaults (plus the build). Figures are
# printed, never asserted.
#
# Environment: RECORDS (250000 per run), AGENTS ("1 2 3"), TIMEOUTS ("50ms 250ms"),
# CLUSTER_BENCH_SECONDS (1500: the driver stops itself then), KEEP=1 keeps the temporary
# directory (every agent's, etcd's and MinIO's log, each shoal-bench report).
# OBJECT_STORE_LATENCY=20ms gives every agent's object-store requests an S3-like latency
# (--object-store-latency: log-normal, that median, 1% over ten times it; MinIO on
# loopback answers in well under a millisecond).
# etcd and MinIO must be installed; tests/cluster/run.sh installs both (etcd from
# Debian's etcd-server, MinIO with `go install`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

source bench/servers.sh

work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-cluster-bench.XXXXXX")"
cleanup() { [[ "${KEEP:-}" == 1 ]] && echo "kept $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT
limit="${CLUSTER_BENCH_SECONDS:-1500}"
keep=(); [[ "${KEEP:-}" == 1 ]] && keep=(--keep)

if [[ -n "${OBJECT_STORE_LATENCY:-}" ]]; then
  export SHOAL_OBJECT_STORE_LATENCY="$OBJECT_STORE_LATENCY"
  echo "==> object-store latency: median $OBJECT_STORE_LATENCY (injected by the agents)" >&2
fi
echo "==> machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr); uptime:$(uptime)" >&2
rc=0
timeout -k 30 $(( limit + 60 )) python3 -u bench/cluster.py \
  --shoal "$root/target/release/shoal" --bench "$root/target/release/shoal-bench" \
  --etcd "$etcd" --minio "$minio" --workdir "$work/run" --seconds "$limit" \
  --records "${RECORDS:-250000}" --agents "${AGENTS:-1 2 3}" --timeouts "${TIMEOUTS:-50ms 250ms}" \
  "${keep[@]}" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT HUP
while :; do
  wait "$child" && rc=0 || rc=$?
  kill -0 "$child" 2>/dev/null || break
done
echo "==> uptime at the end:$(uptime)" >&2
exit "$rc"
