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

cache="${SHOAL_CACHE:-$HOME/.cache/shoal}"
build="$cache/java-txn-compat-build"
mkdir -p "$build"
timeout_s="${SHOAL_COMPAT_TIMEOUT:-300}"

build_failed() {
  echo "java-txn: build failed" >&2
  echo "java-txn: 0 passed, 1 failed"
  exit 1
}

command -v mvn >/dev/null 2>&1 || { echo "java-txn: mvn (Maven) is not on PATH" >&2; build_failed; }
command -v java >/dev/null 2>&1 || { echo "java-txn: java is not on PATH" >&2; build_failed; }

# Fail fast when nothing listens at the (first) bootstrap address.
first="${bootstrap%%,*}"
host="${first%:*}"; port="${first##*:}"
host="${host#[}"; host="${host%]}"
if ! timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; then
  echo "java-txn: nothing accepts connections at $first"
  echo "java-txn: 0 passed, 1 failed"
  exit 1
fi

mvn_args=(-q -B -Dstyle.color=never -f "$here/pom.xml" "-Dshoal.build.dir=$build"
          compile dependency:build-classpath "-Dmdep.outputFile=$build/classpath.txt")
# Offline first (fast, no network); online when something is missing from ~/.m2.
if ! mvn -o "${mvn_args[@]}" >"$build/mvn-offline.log" 2>&1; then
  echo "java-txn: offline build failed, building online (first run?)" >&2
  if ! mvn "${mvn_args[@]}" >"$build/mvn.log" 2>&1; then
    tail -n 40 "$build/mvn.log" >&2
    build_failed
  fi
fi
[[ -s "$build/classpath.txt" && -d "$build/classes" ]] || build_failed

jvm_opts=(-Xmx512m
          "-Dorg.slf4j.simpleLogger.defaultLogLevel=${SHOAL_COMPAT_LOG_LEVEL:-error}"
          -Dorg.slf4j.simpleLogger.showDateTime=true
          "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS"
          "-Dcompat.globalTimeoutSeconds=$timeout_s")
[[ "${SHOAL_COMPAT_VERBOSE:-0}" == 1 ]] && jvm_opts+=(-Dcompat.verbose=true)
[[ "${SHOAL_COMPAT_KEEP_TOPICS:-0}" == 1 ]] && jvm_opts+=(-Dcompat.keepTopics=true)
[[ -n "${SHOAL_TXN_ONLY:-}" ]] && jvm_opts+=("-Dcompat.only=$SHOAL_TXN_ONLY")
[[ -n "${SHOAL_TXN_TIMEOUT_WAIT_S:-}" ]] && jvm_opts+=("-Dcompat.txnTimeoutWaitSeconds=$SHOAL_TXN_TIMEOUT_WAIT_S")

# The program has its own global timeout; `timeout` is a last resort if the JVM wedges.
rc=0
timeout -k 10 $(( timeout_s + 60 )) \
  java "${jvm_opts[@]}" -cp "$build/classes:$(cat "$build/classpath.txt")" \
  dev.shoal.compat.txn.TxnCompat "$bootstrap" || rc=$?
if (( rc == 124 || rc == 137 )); then
  echo "java-txn: killed after ${timeout_s}s"
  echo "java-txn: 0 passed, 1 failed"
fi
exit "$rc"
