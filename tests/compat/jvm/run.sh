#!/usr/bin/env bash
# Run one Java-client compatibility suite against a Kafka-protocol server.
#
#   tests/compat/jvm/run.sh SUITE BOOTSTRAP      e.g. tests/compat/jvm/run.sh basic 127.0.0.1:9092
#
# SUITE is one of
#   basic    admin, 5 codecs, a 1 MB record, offsets and timestamps (no groups);
#            last line `java-compat: N passed, M failed`
#   groups   consumer groups, classic protocol; last line `java-groups: N passed, M failed`
#   txn      idempotent producer and transactions; last line `java-txn: N passed, M failed`
# (lost-ack and security are driven by their own runners, ../lost-ack/run.sh and
# ../security/run.sh, which start their own servers.)
#
# Builds the suite's module of the Maven project beside this script (lib.sh: offline when
# ~/.m2 already has what it needs, output in ${SHOAL_CACHE:-$HOME/.cache/shoal}/jvm-compat-build),
# then runs it. The server must have topic auto-creation off. Exit code: 0 when every check
# passed, 1 otherwise (also when the build failed), 2 on bad arguments.
#
# Environment: SHOAL_KAFKA_CLIENTS=VERSION (another kafka-clients release than the pom's, e.g. 3.9.1),
#              SHOAL_COMPAT_LOG_LEVEL (client log level, default error; `debug` shows the
#              request headers with their API versions),
#              SHOAL_COMPAT_TIMEOUT (seconds for the whole run; default basic 600, groups 480, txn 300),
#              SHOAL_COMPAT_VERBOSE=1 (stack traces; groups: every member's rebalance callbacks),
#              SHOAL_COMPAT_KEEP_TOPICS=1 (do not delete the test topics and groups),
#              SHOAL_COMPAT_ONLY=REGEX (only the checks whose name matches, e.g. '^6\.'),
#              groups: SHOAL_GROUPS_SESSION_TIMEOUT_MS (default 6000), SHOAL_GROUPS_RECORDS (default 3000),
#              txn: SHOAL_TXN_TIMEOUT_WAIT_S (check 6: longest wait for the server to abort the
#              timed-out transaction, default 30).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -eq 2 ]] || { echo "usage: $0 basic|groups|txn BOOTSTRAP" >&2; exit 2; }
suite="$1" bootstrap="$2"
case "$suite" in
  basic)  name=java-compat main=dev.shoal.compat.basic.JavaCompat  timeout_s="${SHOAL_COMPAT_TIMEOUT:-600}" ;;
  groups) name=java-groups main=dev.shoal.compat.groups.GroupsCompat timeout_s="${SHOAL_COMPAT_TIMEOUT:-480}" ;;
  txn)    name=java-txn    main=dev.shoal.compat.txn.TxnCompat       timeout_s="${SHOAL_COMPAT_TIMEOUT:-300}" ;;
  *) echo "unknown suite '$suite' (basic, groups, txn)" >&2; exit 2 ;;
esac

source "$here/lib.sh"
fail() { echo "$name: 0 passed, 1 failed"; exit 1; }
jvm_reachable "$name" "$bootstrap" || fail
jvm_build "$name" "$suite" || fail

jvm_opts=(-Xmx512m
          "-Dorg.slf4j.simpleLogger.defaultLogLevel=${SHOAL_COMPAT_LOG_LEVEL:-error}"
          -Dorg.slf4j.simpleLogger.showDateTime=true
          "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS"
          "-Dcompat.globalTimeoutSeconds=$timeout_s")
[[ "${SHOAL_COMPAT_VERBOSE:-0}" == 1 ]] && jvm_opts+=(-Dcompat.verbose=true)
[[ "${SHOAL_COMPAT_KEEP_TOPICS:-0}" == 1 ]] && jvm_opts+=(-Dcompat.keepTopics=true)
[[ -n "${SHOAL_COMPAT_ONLY:-}" ]] && jvm_opts+=("-Dcompat.only=$SHOAL_COMPAT_ONLY")
[[ -n "${SHOAL_GROUPS_SESSION_TIMEOUT_MS:-}" ]] && jvm_opts+=("-Dcompat.sessionTimeoutMs=$SHOAL_GROUPS_SESSION_TIMEOUT_MS")
[[ -n "${SHOAL_GROUPS_RECORDS:-}" ]] && jvm_opts+=("-Dcompat.records=$SHOAL_GROUPS_RECORDS")
[[ -n "${SHOAL_TXN_TIMEOUT_WAIT_S:-}" ]] && jvm_opts+=("-Dcompat.txnTimeoutWaitSeconds=$SHOAL_TXN_TIMEOUT_WAIT_S")

# (The groups suite's worker JVMs stop by themselves when their stdin closes.)
jvm_run "$name" "$timeout_s" "$main" "$bootstrap"
