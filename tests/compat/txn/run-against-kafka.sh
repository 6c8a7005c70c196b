#!/usr/bin/env bash
# Validate the transaction suites themselves against real Apache Kafka 3.9.1: start a
# throw-away single-node broker (bench/kafka), run ./run.sh against it, stop it.
#
#   tests/compat/txn/run-against-kafka.sh
#
# bench/kafka/start-kafka.sh already sets transaction.state.log.replication.factor=1 and
# transaction.state.log.min.isr=1 (transactions on one broker). On top of that the broker
# looks for timed-out transactions every second instead of every 10 s (Kafka's default for
# transaction.abort.timed.out.transaction.cleanup.interval.ms), so the timeout check does not
# wait long; Shoal scans every second too.
#
# Environment: SHOAL_TXN_KAFKA_REQUEST_LOG=1 also logs every request the broker receives (with
# its API version) to DATA_DIR/requests.log, and keeps DATA_DIR (its path is printed);
# everything run.sh takes.
# Exit code: that of run.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
data="$(mktemp -d "${TMPDIR:-/tmp}/shoal-txn-kafka.XXXXXX")"
keep=0
cleanup() {
  "$root/bench/kafka/stop-kafka.sh" "$data" || true
  if (( keep )); then
    echo "run-against-kafka: kept $data" >&2
  else
    rm -rf "$data"
  fi
}
trap cleanup EXIT

export SHOAL_KAFKA_EXTRA_PROPS="transaction.abort.timed.out.transaction.cleanup.interval.ms=1000${SHOAL_KAFKA_EXTRA_PROPS:+
$SHOAL_KAFKA_EXTRA_PROPS}"

if [[ "${SHOAL_TXN_KAFKA_REQUEST_LOG:-0}" == 1 ]]; then
  keep=1
  # The last -Dlog4j2.configurationFile on the java command line wins over start-kafka.sh's own:
  # the broker's file plus one that sends the request logger to DATA_DIR/requests.log.
  cat >"$data/log4j2-requests.properties" <<LOG4J
appender.requests.type=File
appender.requests.name=REQUESTS
appender.requests.fileName=$data/requests.log
appender.requests.layout.type=PatternLayout
appender.requests.layout.pattern=[%d] %m%n
logger.request.name=kafka.request.logger
logger.request.level=DEBUG
logger.request.additivity=false
logger.request.appenderRef.requests.ref=REQUESTS
LOG4J
  export SHOAL_KAFKA_JVM_OPTS="${SHOAL_KAFKA_JVM_OPTS:-} -Dlog4j2.configurationFile=$root/bench/kafka/broker-log4j2.properties,$data/log4j2-requests.properties"
fi

SHOAL_KAFKA_WATCH_PID=$$ SHOAL_KAFKA_MAX_SECONDS="${SHOAL_KAFKA_MAX_SECONDS:-1800}" \
  "$root/bench/kafka/start-kafka.sh" "$port" "$data" >/dev/null
echo "run-against-kafka: Apache Kafka on 127.0.0.1:$port" >&2

"$here/run.sh" "127.0.0.1:$port"
