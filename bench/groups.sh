#!/usr/bin/env bash
# Consumer-group join and rebalance times, group.protocol=classic against
# group.protocol=consumer (KIP-848), on a fresh Shoal playground and a fresh Apache Kafka
# (bench/kafka, single-node KRaft) in the same run, driven by the Java 4.x client
# (tests/compat/jvm/groupbench: N members join a topic of 6 partitions, one is added, one
# leaves; median over the rounds). Prints each server's RESULT lines, then a table.
#
#   bench/groups.sh [release|debug|PATH-TO-SHOAL]    default release (built here)
#   ROUNDS=5 MEMBERS=3 PARTITIONS=6 bench/groups.sh debug
#   SKIP_KAFKA=1 bench/groups.sh ...                 Shoal only
#   SHOAL_ARGS="--consumer-group-heartbeat-interval 1s" bench/groups.sh   extra playground flags
#   KAFKA_PROPS=$'group.consumer.heartbeat.interval.ms=1000' bench/groups.sh   extra broker lines
#
# Both servers start with the same group settings: no initial rebalance delay (the reference
# broker's group.initial.rebalance.delay.ms=0, so Shoal gets --group-initial-rebalance-delay
# ${SHOAL_INITIAL_DELAY:-0s}), and their defaults otherwise (consumer protocol: 5 s heartbeat
# interval, 45 s session timeout, uniform assignor). Clients use their defaults (classic:
# heartbeat.interval.ms 3000). A measurement, never asserted; record it in
# docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-groups-bench.XXXXXX")"
source bench/lib.sh
trap bench_cleanup EXIT
bench_shoal_bin "${1:-release}"
source tests/compat/jvm/lib.sh
jvm_build java-groupbench groupbench || exit 1

jvm_opts=(-Xmx512m -Dorg.slf4j.simpleLogger.defaultLogLevel=error
          "-Dbench.rounds=${ROUNDS:-5}" "-Dbench.members=${MEMBERS:-3}" "-Dbench.partitions=${PARTITIONS:-6}")
results=()
bench() {  # LABEL BOOTSTRAP
  jvm_run java-groupbench 1800 dev.shoal.compat.groupbench.GroupBench "$2" "$1" | tee "$work/$1.out" || true
  results+=("$(grep '^RESULT' "$work/$1.out" || true)")
}

echo "==> Shoal playground ($shoal_bin)" >&2
port="$(free_port)"
# shellcheck disable=SC2086
bench_playground "$work/shoal.log" --data-dir "$work/shoal" --listen "127.0.0.1:$port" \
  --group-initial-rebalance-delay "${SHOAL_INITIAL_DELAY:-0s}" ${SHOAL_ARGS:-}
bench shoal "127.0.0.1:$port"
bench_stop_playground

if [[ "${SKIP_KAFKA:-}" != 1 ]]; then
  kversion="$(basename "$(ls "$(bench/kafka/fetch-kafka.sh)"/kafka_2.13-*.jar | head -n1)" .jar)"
  kversion="${kversion#kafka_2.13-}"
  echo "==> Apache Kafka $kversion" >&2
  kport="$(free_port)"
  SHOAL_KAFKA_WATCH_PID=$$ SHOAL_KAFKA_EXTRA_PROPS="${KAFKA_PROPS:-}" \
    bench/kafka/start-kafka.sh "$kport" "$work/kafka" >/dev/null
  bench "apache-kafka-$kversion" "127.0.0.1:$kport"
fi

echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "${results[@]}"
echo
printf '%s\n' "${results[@]}" >"$work/results.txt"
python3 - "$work/results.txt" <<'PY'
import sys
print(f"{'server':<22} {'protocol':<9} {'join p50':>9} {'add p50':>9} {'leave p50':>9}   (ms; min..max over the rounds)")
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 3 or f[0] != "RESULT":
        continue
    kv = dict(x.split("=", 1) for x in f[2:] if "=" in x)
    print(f"{f[1]:<22} {kv['protocol']:<9} {kv['join_p50_ms']:>9} {kv['add_p50_ms']:>9} {kv['leave_p50_ms']:>9}   "
          f"join {kv['join_ms']}, add {kv['add_ms']}, leave {kv['leave_ms']}")
PY
