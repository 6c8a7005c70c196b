#!/usr/bin/env bash
# Side-by-side benchmark: the same shoal-bench run against the Shoal playground and
# against Apache Kafka (single-node KRaft from Maven Central jars), on this machine.
#
#   bench/run.sh [extra shoal-bench flags...]      e.g. bench/run.sh --duration 20
#   SHOAL_BIN=path/to/shoal bench/run.sh ...         another build of Shoal (e.g. an older
#                                                    commit's, to compare before and after)
#   SKIP_KAFKA=1 bench/run.sh ...                    Shoal only (SHOAL_LABEL names its RESULT line)
#   PERF_DATA=shoal.perf bench/run.sh ...            record the agent with `perf record -g`
#                                                    while shoal-bench runs (perf report -i)
#   SKIP_BUILD=1 bench/run.sh ...                    use the release binaries already built
#   SHOAL_ARGS='--batch-timeout 250ms' bench/run.sh  extra playground flags (split on spaces)
#   OBJECT_STORE_LATENCY=20ms bench/run.sh           S3-like latency on every object-store
#                                                    request of the playground (log-normal,
#                                                    1% over 10x the median; benchmarks only)
#
# Builds release binaries, starts each server in a temporary directory on a free
# loopback port, runs shoal-bench (1 KiB records by default), stops the server, and
# prints both RESULT lines at the end. Record the output in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench.XXXXXX")"
shoal_pid=""
cleanup() {
  [[ -n "$shoal_pid" ]] && kill -TERM "$shoal_pid" 2>/dev/null || true
  [[ -f "$work/kafka/kafka.pid" ]] && bench/kafka/stop-kafka.sh "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> building release binaries" >&2
[[ "${SKIP_BUILD:-}" == 1 ]] || cargo build --release -q -p shoal -p shoal-bench
bench_args=(--record-size 1024 --records "${RECORDS:-2000000}" "$@")
results=()

echo "==> Shoal playground" >&2
port="$(free_port)"; mport="$(free_port)"
read -r -a shoal_args <<<"${SHOAL_ARGS:-}"
if [[ -n "${OBJECT_STORE_LATENCY:-}" ]]; then shoal_args+=(--object-store-latency "$OBJECT_STORE_LATENCY"); fi
"${SHOAL_BIN:-target/release/shoal}" playground --data-dir "$work/shoal" --listen "127.0.0.1:$port" \
  --metrics-listen "127.0.0.1:$mport" "${shoal_args[@]}" >"$work/shoal.log" 2>&1 &
shoal_pid=$!
for _ in $(seq 100); do grep -q "Shoal is listening" "$work/shoal.log" && break; sleep 0.1; done
perf_pid=""
if [[ -n "${PERF_DATA:-}" ]]; then
  perf record -g -o "$PERF_DATA" -p "$shoal_pid" >"$work/perf.log" 2>&1 &
  perf_pid=$!
fi
target/release/shoal-bench --bootstrap "127.0.0.1:$port" --label "${SHOAL_LABEL:-shoal-playground}" \
  --metrics-url "http://127.0.0.1:$mport/metrics" --pid "$shoal_pid" "${bench_args[@]}" | tee "$work/shoal.out"
results+=("$(grep '^RESULT' "$work/shoal.out")")
if [[ -n "$perf_pid" ]]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
# Object-store requests and hedged GETs of the whole run (the tail figures' context).
store_lines="$(curl -fsS "http://127.0.0.1:$mport/metrics" 2>/dev/null \
  | grep -E '^shoal_object_(hedged_gets_total|store_requests_total)' || true)"
kill -TERM "$shoal_pid"; wait "$shoal_pid" 2>/dev/null || true; shoal_pid=""

if [[ "${SKIP_KAFKA:-}" != 1 ]]; then
  echo "==> Apache Kafka" >&2
  kport="$(free_port)"
  kpid="$(SHOAL_KAFKA_WATCH_PID=$$ bench/kafka/start-kafka.sh "$kport" "$work/kafka")"
  kversion="$(basename "$(ls "$(bench/kafka/fetch-kafka.sh)"/kafka_2.13-*.jar | head -n1)" .jar)"
  kversion="${kversion#kafka_2.13-}"
  target/release/shoal-bench --bootstrap "127.0.0.1:$kport" --label "apache-kafka-$kversion" \
    --pid "$kpid" "${bench_args[@]}" | tee "$work/kafka.out"
  results+=("$(grep '^RESULT' "$work/kafka.out")")
fi

echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
printf '%s\n' "${results[@]}"
if [[ -n "${store_lines:-}" ]]; then
  echo "$store_lines" | sed 's/^/shoal metrics: /'
fi
