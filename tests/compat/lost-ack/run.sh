#!/usr/bin/env bash
# Retries after lost Produce acknowledgements must not duplicate records (idempotent producer).
#
#   tests/compat/lost-ack/run.sh [PATH_TO_SHOAL]   own Shoal playground (default target/debug/shoal)
#   tests/compat/lost-ack/run.sh --kafka           own throw-away Apache Kafka 4.3.1 instead
#
# See README.md. Last line: `lost-ack: passed` or `lost-ack: failed: REASON`.
# Environment: LOST_ACK_CLIENTS (confluent,java), LOST_ACK_RECORDS (5000),
#              LOST_ACK_DROP_EVERY (7), LOST_ACK_SECONDS (240, hard limit),
#              LOST_ACK_KEEP=1 (keep the temp dir), LOST_ACK_JAVA_LOG_LEVEL (error).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
if [[ "${1:-}" == "--kafka" ]]; then
  args=(kafka)
else
  # A relative binary path is relative to the caller's directory.
  shoal="${1:-$root/target/debug/shoal}"
  [[ "$shoal" == /* ]] || shoal="$PWD/$shoal"
  args=(shoal "$shoal")
fi
py="$(bash "$root/tests/compat/python/venv.sh")"

# The Java producer: Maven build into the cache (offline when ~/.m2 has everything).
java_cp=""
if [[ ",${LOST_ACK_CLIENTS:-confluent,java}," == *",java,"* ]]; then
  source "$root/tests/compat/jvm/lib.sh"
  if ! jvm_build lost-ack lost-ack; then
    echo "lost-ack: failed: the Java producer did not build (or set LOST_ACK_CLIENTS=confluent)"
    exit 1
  fi
  java_cp="$JAVA_CP"
fi

limit="${LOST_ACK_SECONDS:-240}"
cd "$here"
rc=0
# harness.py stops itself after $limit seconds; `timeout` is the last resort. A TERM/INT
# sent to this script is passed on (the harness then stops its server and cleans up).
timeout -k 10 $(( limit + 30 )) "$py" -u "$here/harness.py" "${args[@]}" ${java_cp:+"$java_cp"} &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT HUP
while :; do
  wait "$child" && rc=0 || rc=$?
  kill -0 "$child" 2>/dev/null || break
done
if (( rc == 124 || rc == 137 )); then
  echo "lost-ack: failed: killed after $(( limit + 30 ))s"
fi
exit "$rc"
