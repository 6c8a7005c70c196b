#!/usr/bin/env bash
# Run the Java-client compatibility checks against a Kafka-protocol server.
#
#   tests/compat/java/run.sh BOOTSTRAP        e.g. tests/compat/java/run.sh 127.0.0.1:9092
#
# Builds the small Maven project next to this script (offline when ~/.m2 already has what it
# needs), with its build output in ${SHOAL_CACHE:-$HOME/.cache/shoal}/java-compat-build, then
# runs it. The server must have topic auto-creation off. Last line printed:
#   java-compat: N passed, M failed
# Exit code: 0 when every check passed, 1 otherwise (also when the build failed).
#
# Environment: SHOAL_COMPAT_LOG_LEVEL (client log level, default error),
#              SHOAL_COMPAT_TIMEOUT (seconds for the whole run, default 600),
#              SHOAL_COMPAT_VERBOSE=1 (stack traces for failed checks),
#              SHOAL_COMPAT_KEEP_TOPICS=1 (do not delete the test topics at the end).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -eq 1 ]] || { echo "usage: $0 BOOTSTRAP" >&2; exit 2; }
bootstrap="$1"

timeout_s="${SHOAL_COMPAT_TIMEOUT:-600}"
source "$here/../java-suite.sh"
fail() { echo "java-compat: 0 passed, 1 failed"; exit 1; }
java_suite_reachable java-compat "$bootstrap" || fail
java_suite_build java-compat "$here" "${SHOAL_CACHE:-$HOME/.cache/shoal}/java-compat-build" || fail

jvm_opts=(-Xmx512m
          "-Dorg.slf4j.simpleLogger.defaultLogLevel=${SHOAL_COMPAT_LOG_LEVEL:-error}"
          "-Dcompat.globalTimeoutSeconds=$timeout_s")
[[ "${SHOAL_COMPAT_VERBOSE:-0}" == 1 ]] && jvm_opts+=(-Dcompat.verbose=true)
[[ "${SHOAL_COMPAT_KEEP_TOPICS:-0}" == 1 ]] && jvm_opts+=(-Dcompat.keepTopics=true)

java_suite_run java-compat "$timeout_s" dev.shoal.compat.JavaCompat "$bootstrap"
