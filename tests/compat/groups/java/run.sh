#!/usr/bin/env bash
# Run the Java-client consumer-group compatibility checks against a Kafka-protocol server.
#
#   tests/compat/groups/java/run.sh BOOTSTRAP        e.g. tests/compat/groups/java/run.sh 127.0.0.1:9092
#
# Builds the small Maven project next to this script (offline when ~/.m2 already has what it
# needs), with its build output in ${SHOAL_CACHE:-$HOME/.cache/shoal}/java-groups-compat-build,
# then runs it. The server must have topic auto-creation off and consumer groups. Last line:
#   java-groups: N passed, M failed
# Exit code: 0 when every check passed, 1 otherwise (also when the build failed).
#
# Environment: SHOAL_COMPAT_LOG_LEVEL (client log level, default error),
#              SHOAL_COMPAT_TIMEOUT (seconds for the whole run, default 480),
#              SHOAL_COMPAT_VERBOSE=1 (stack traces, rebalance callbacks of every member),
#              SHOAL_COMPAT_KEEP_TOPICS=1 (do not delete the test topics and groups),
#              SHOAL_GROUPS_ONLY=REGEX (only the checks whose name matches, e.g. '^c\.'),
#              SHOAL_GROUPS_SESSION_TIMEOUT_MS (default 6000), SHOAL_GROUPS_RECORDS (default 3000).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -eq 1 ]] || { echo "usage: $0 BOOTSTRAP" >&2; exit 2; }
bootstrap="$1"

timeout_s="${SHOAL_COMPAT_TIMEOUT:-480}"
source "$here/../../java-suite.sh"
fail() { echo "java-groups: 0 passed, 1 failed"; exit 1; }
java_suite_reachable java-groups "$bootstrap" || fail
java_suite_build java-groups "$here" "${SHOAL_CACHE:-$HOME/.cache/shoal}/java-groups-compat-build" || fail

jvm_opts=(-Xmx512m
          "-Dorg.slf4j.simpleLogger.defaultLogLevel=${SHOAL_COMPAT_LOG_LEVEL:-error}"
          "-Dcompat.globalTimeoutSeconds=$timeout_s")
[[ "${SHOAL_COMPAT_VERBOSE:-0}" == 1 ]] && jvm_opts+=(-Dcompat.verbose=true)
[[ "${SHOAL_COMPAT_KEEP_TOPICS:-0}" == 1 ]] && jvm_opts+=(-Dcompat.keepTopics=true)
[[ -n "${SHOAL_GROUPS_ONLY:-}" ]] && jvm_opts+=("-Dcompat.only=$SHOAL_GROUPS_ONLY")
[[ -n "${SHOAL_GROUPS_SESSION_TIMEOUT_MS:-}" ]] && jvm_opts+=("-Dcompat.sessionTimeoutMs=$SHOAL_GROUPS_SESSION_TIMEOUT_MS")
[[ -n "${SHOAL_GROUPS_RECORDS:-}" ]] && jvm_opts+=("-Dcompat.records=$SHOAL_GROUPS_RECORDS")

# (Its worker JVMs stop by themselves when their stdin closes.)
java_suite_run java-groups "$timeout_s" dev.shoal.compat.groups.GroupsCompat "$bootstrap"
