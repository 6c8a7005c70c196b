#!/usr/bin/env bash
# Run the Java-client transaction / idempotent-producer compatibility checks against a
# Kafka-protocol server.
#
#   tests/compat/txn/java/run.sh BOOTSTRAP        e.g. tests/compat/txn/java/run.sh 127.0.0.1:9092
#
# Builds the small Maven project next to this script (offline when ~/.m2 already has what it
# needs), with its build output in ${SHOAL_CACHE:-$HOME/.cache/shoal}/java-txn-compat-build,
# then runs it. The server must have topic auto-creation off, consumer groups, the idempotent
# producer and transactions. Last line:
#   java-txn: N passed, M failed
# Exit code: 0 when every check passed, 1 otherwise (also when the build failed).
#
# Environment: SHOAL_COMPAT_LOG_LEVEL (client log level, default error; `debug` shows the
#              request headers with their API versions),
#              SHOAL_COMPAT_TIMEOUT (seconds for the whole run, default 300),
#              SHOAL_COMPAT_VERBOSE=1 (stack traces),
#              SHOAL_COMPAT_KEEP_TOPICS=1 (do not delete the test topics and groups),
#              SHOAL_TXN_ONLY=REGEX (only the checks whose name matches, e.g. '^6\.'),
#              SHOAL_TXN_TIMEOUT_WAIT_S (check 6: longest wait for the server to abort the
#              timed-out transaction, default 30).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -eq 1 ]] || { echo "usage: $0 BOOTSTRAP" >&2; exit 2; }
bootstrap="$1"

timeout_s="${SHOAL_COMPAT_TIMEOUT:-300}"
source "$here/../../java-suite.sh"
fail() { echo "java-txn: 0 passed, 1 failed"; exit 1; }
java_suite_reachable java-txn "$bootstrap" || fail
java_suite_build java-txn "$here" "${SHOAL_CACHE:-$HOME/.cache/shoal}/java-txn-compat-build" || fail

jvm_opts=(-Xmx512m
          "-Dorg.slf4j.simpleLogger.defaultLogLevel=${SHOAL_COMPAT_LOG_LEVEL:-error}"
          -Dorg.slf4j.simpleLogger.showDateTime=true
          "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS"
          "-Dcompat.globalTimeoutSeconds=$timeout_s")
[[ "${SHOAL_COMPAT_VERBOSE:-0}" == 1 ]] && jvm_opts+=(-Dcompat.verbose=true)
[[ "${SHOAL_COMPAT_KEEP_TOPICS:-0}" == 1 ]] && jvm_opts+=(-Dcompat.keepTopics=true)
[[ -n "${SHOAL_TXN_ONLY:-}" ]] && jvm_opts+=("-Dcompat.only=$SHOAL_TXN_ONLY")
[[ -n "${SHOAL_TXN_TIMEOUT_WAIT_S:-}" ]] && jvm_opts+=("-Dcompat.txnTimeoutWaitSeconds=$SHOAL_TXN_TIMEOUT_WAIT_S")

java_suite_run java-txn "$timeout_s" dev.shoal.compat.txn.TxnCompat "$bootstrap"
