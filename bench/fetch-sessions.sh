#!/usr/bin/env bash
# What incremental fetch sessions (KIP-227) save the agent: the same Java consumer
# (Kafka 4.3.1's console consumer) sits at the tail of a topic of P partitions, long-
# polling, once against a playground with sessions (the default) and once with
# --fetch-session-cache-slots 0 (every fetch names all P partitions). Prints, for each,
# the fetches the agent answered and its CPU time per fetch (user + system, from
# /proc/PID/stat). A measurement, never asserted.
#
#   bench/fetch-sessions.sh                 P=2000, 20 s at the tail
#   PARTITIONS=10000 SECONDS_AT_TAIL=30 bench/fetch-sessions.sh
#   SHOAL_BIN=target/debug/shoal bench/fetch-sessions.sh   (default: a release build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
partitions="${PARTITIONS:-2000}"
tail_secs="${SECONDS_AT_TAIL:-20}"
if [[ -z "${SHOAL_BIN:-}" ]]; then
  echo "==> building a release shoal" >&2
  cargo build --release -q -p shoal
  SHOAL_BIN=target/release/shoal
fi
libs="$(bench/kafka/fetch-kafka.sh)"
py="$(bash tests/compat/python/venv.sh)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-fetch-sessions.XXXXXX")"
pid=""
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
fetches() { curl -s "$1" | awk '/^shoal_fetch_requests_total/ {n += $2} END {print n + 0}'; }

run() {
  local label="$1"; shift
  local port mport
  port=$(free_port); mport=$(free_port)
  rm -rf "$work/d"
  "$SHOAL_BIN" playground --data-dir "$work/d" --listen "127.0.0.1:$port" \
    --metrics-listen "127.0.0.1:$mport" "$@" >"$work/$label.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "Shoal is listening" "$work/$label.log" 2>/dev/null && break; sleep 0.1; done
  "$py" - "127.0.0.1:$port" "$partitions" <<'PY'
import sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap, n = sys.argv[1], int(sys.argv[2])
admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics([NewTopic("tail", n, 1)])["tail"].result(120)
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
for i in range(n):
    p.produce("tail", value=b"x", partition=i)
p.flush(60)
PY
  # The consumer reads the n records, then idles at the tail; its stdout is discarded.
  java -cp "$libs/*" org.apache.kafka.tools.consumer.ConsoleConsumer \
    --bootstrap-server "127.0.0.1:$port" --topic tail --from-beginning \
    --consumer-property fetch.max.wait.ms=100 >/dev/null 2>&1 &
  local cpid=$!
  sleep 10  # join, first full fetch, catch-up
  local c0 f0 c1 f1
  c0=$(cpu_ticks "$pid"); f0=$(fetches "http://127.0.0.1:$mport/metrics")
  sleep "$tail_secs"
  c1=$(cpu_ticks "$pid"); f1=$(fetches "http://127.0.0.1:$mport/metrics")
  kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  local n=$(( f1 - f0 ))
  python3 - "$label" "$n" "$(( c1 - c0 ))" "$clk" "$tail_secs" <<'PY'
import sys
label, n, ticks, clk, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cpu_ms = ticks * 1000 / clk
per = cpu_ms * 1000 / n if n else float("nan")
print(f"RESULT {label}: {n} fetches in {secs} s, agent CPU {cpu_ms:.0f} ms, {per:.0f} us per fetch")
PY
}

echo "==> $partitions partitions, a Java consumer idling at the tail for $tail_secs s" >&2
run sessions
run full-fetches --fetch-session-cache-slots 0
