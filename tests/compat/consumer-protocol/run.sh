#!/usr/bin/env bash
# KIP-848 consumer groups (group.protocol=consumer) with the Java 4.x consumer and
# librdkafka, each member a separate process: members join, leave, are killed with
# SIGKILL, restart as static members, and every acknowledged record is consumed with
# the committed offsets at the log end (see run.py).
#
#   tests/compat/consumer-protocol/run.sh BOOTSTRAP
#
# The server's consumer-group session timeout decides how soon a killed member's
# partitions move; run-all.sh starts its playground with
# SHOAL_CONSUMER_GROUP_SESSION_TIMEOUT=8s so that step takes seconds, not 45.
# Last line: `consumer protocol: N failed`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/kafka4.sh
source "$here/../lib/kafka4.sh"
py="$(bash "$here/../python/venv.sh")"
logs="$(mktemp -d "${TMPDIR:-/tmp}/shoal-consumer-protocol.XXXXXX")"
trap 'rm -rf "$logs"' EXIT
if ! LOGDIR="$logs" "$py" "$here/run.py" "$bootstrap" "$libs"; then
  for f in "$logs"/*.err; do
    echo "--- $(basename "$f") (last lines)"; grep -v SLF4J "$f" | tail -20 || true
  done
  exit 1
fi
