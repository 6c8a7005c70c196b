#!/usr/bin/env bash
# Stop a broker started by start-kafka.sh:  bench/kafka/stop-kafka.sh DATA_DIR
# Sends SIGTERM, waits up to SHOAL_KAFKA_STOP_TIMEOUT seconds (default 30), then SIGKILL.
# Data stays in DATA_DIR (remove the directory yourself if you do not need it).
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DATA_DIR" >&2; exit 2; }
data="$1"
pidfile="$data/kafka.pid"
timeout="${SHOAL_KAFKA_STOP_TIMEOUT:-30}"

is_our_broker() {
  kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'kafka.Kafka'
}

if [[ ! -f "$pidfile" ]]; then
  echo "stop-kafka: no $pidfile; nothing to stop" >&2
  exit 0
fi
pid="$(cat "$pidfile")"
if is_our_broker "$pid"; then
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $(( timeout * 2 ))); do
    is_our_broker "$pid" || break
    sleep 0.5
  done
  if is_our_broker "$pid"; then
    echo "stop-kafka: broker $pid still alive after ${timeout}s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
fi
rm -f "$pidfile"

# The watchdog notices the broker is gone within a few seconds; end it now anyway.
if [[ -f "$data/kafka-watchdog.pid" ]]; then
  wpid="$(cat "$data/kafka-watchdog.pid")"
  if kill -0 "$wpid" 2>/dev/null && tr '\0' ' ' <"/proc/$wpid/cmdline" 2>/dev/null | grep -q 'bash'; then
    kill -TERM "$wpid" 2>/dev/null || true
  fi
  rm -f "$data/kafka-watchdog.pid"
fi

