#!/usr/bin/env bash
# Validate the consumer-group suites themselves against real Apache Kafka 3.9.1: start a
# throw-away single-node broker (bench/kafka), run ./run.sh against it, stop it.
#
#   tests/compat/groups/run-against-kafka.sh
#
# Exit code: that of run.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
data="$(mktemp -d "${TMPDIR:-/tmp}/shoal-groups-kafka.XXXXXX")"
cleanup() {
  "$root/bench/kafka/stop-kafka.sh" "$data" || true
  rm -rf "$data"
}
trap cleanup EXIT

SHOAL_KAFKA_WATCH_PID=$$ SHOAL_KAFKA_MAX_SECONDS="${SHOAL_KAFKA_MAX_SECONDS:-3600}" \
  "$root/bench/kafka/start-kafka.sh" "$port" "$data" >/dev/null
echo "run-against-kafka: Apache Kafka on 127.0.0.1:$port" >&2

"$here/run.sh" "127.0.0.1:$port"
