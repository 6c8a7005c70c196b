#!/usr/bin/env bash
# Consumer-group compatibility suites with real clients, against a running Kafka-protocol server
# that implements consumer groups (classic protocol) and has topic auto-creation off.
#
#   tests/compat/groups/run.sh BOOTSTRAP            e.g. tests/compat/groups/run.sh 127.0.0.1:9092
#
# Runs ../jvm/run.sh groups (the Java client), python/run.sh (confluent-kafka, kafka-python) and
# go/run.sh (franz-go), one after the other. Last line: `groups-compat: N passed, M failed`
# (counting suites). Exit code: non-zero if any suite failed.
#
# Environment: SHOAL_GROUPS_SUITES="java python go" (a subset to run); everything the
# sub-runners take (see README.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -eq 1 ]] || { echo "usage: $0 BOOTSTRAP" >&2; exit 2; }
bootstrap="$1"

passed=0; failed=0; failures=()
start=$SECONDS
for suite in ${SHOAL_GROUPS_SUITES:-java python go}; do
  case "$suite" in
    java) cmd=("$here/../jvm/run.sh" groups "$bootstrap") ;;
    python|go) cmd=("$here/$suite/run.sh" "$bootstrap") ;;
    *) echo "unknown suite '$suite'" >&2; exit 2 ;;
  esac
  echo; echo "==> groups-compat suite: $suite"
  t0=$SECONDS
  if "${cmd[@]}"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failures+=("$suite")
  fi
  echo "==> $suite took $(( SECONDS - t0 )) s"
done

echo
[[ ${#failures[@]} -eq 0 ]] || echo "failed suites: ${failures[*]}"
echo "groups-compat: took $(( SECONDS - start )) s"
echo "groups-compat: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
