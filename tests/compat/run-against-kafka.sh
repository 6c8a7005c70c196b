#!/usr/bin/env bash
# Validate the compatibility tests themselves against real Apache Kafka: start a throw-away
# broker (bench/kafka), run the chosen suites against it, stop it.
#
#   tests/compat/run-against-kafka.sh [java|franz-go|all]     (default: java)
#
# Exit code: that of the Java checks when they ran, else that of the franz-go suite.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
what="${1:-java}"
case "$what" in java|franz-go|all) ;; *) echo "usage: $0 [java|franz-go|all]" >&2; exit 2 ;; esac

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
data="$(mktemp -d "${TMPDIR:-/tmp}/shoal-compat-kafka.XXXXXX")"
cleanup() {
  "$root/bench/kafka/stop-kafka.sh" "$data" || true
  rm -rf "$data"
}
trap cleanup EXIT

SHOAL_KAFKA_WATCH_PID=$$ SHOAL_KAFKA_MAX_SECONDS="${SHOAL_KAFKA_MAX_SECONDS:-3600}" \
  "$root/bench/kafka/start-kafka.sh" "$port" "$data" >/dev/null
echo "run-against-kafka: Apache Kafka on 127.0.0.1:$port" >&2

rc=0
if [[ "$what" == java || "$what" == all ]]; then
  "$here/jvm/run.sh" basic "127.0.0.1:$port" || rc=$?
fi
if [[ "$what" == franz-go || "$what" == all ]]; then
  frc=0
  "$here/franz-go-suite.sh" "127.0.0.1:$port" || frc=$?
  [[ "$what" == franz-go ]] && rc=$frc
fi
exit "$rc"
